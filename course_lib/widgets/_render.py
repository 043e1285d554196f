"""Drawing for the explorers: the one module of the package that imports matplotlib.

A slider moves many times a second, so a redraw must be cheap. A
:class:`BlitFigure` draws everything that does not change (axes, ticks, the
shape of a graph) once into a background, and on each update only restores
that background and draws the few *dynamic* artists (numbers, moving points,
coloured edges) on top: the blitting technique of matplotlib's animations, on
an off-screen Agg canvas. The result is sent to the browser as a PNG, encoded
here with the fastest zlib setting.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

__all__ = ["BlitFigure", "Label", "encode_png", "COLORS"]

COLORS = {
    "value": "#1a7f37",      # forward values (green, as in CS231n's figures)
    "grad": "#c0392b",       # gradients (red)
    "local": "#57606a",      # local gradients, annotations (grey)
    "node": "#f6f8fa",
    "node_edge": "#57606a",
    "edge": "#8c959f",
    "accent": "#0969da",
    "highlight": "#f2c94c",
    "sigmoid": "#1f77b4",
    "tanh": "#ff7f0e",
    "relu": "#2ca02c",
    "shade": "#fde2e1",
    "pos": "#c0392b",        # positive gradient: a step of SGD lowers the weight
    "neg": "#1f6feb",        # negative gradient: a step of SGD raises the weight
}


def _chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def encode_png(rgb: np.ndarray, level: int = 1) -> bytes:
    """An (h, w, 3) uint8 image as PNG bytes (no row filter, zlib ``level``).

    About twice as fast as PIL's encoder for a figure-sized image, which
    matters when it runs on every slider move.
    """
    h, w = rgb.shape[:2]
    raw = np.empty((h, 1 + 3 * w), dtype=np.uint8)
    raw[:, 0] = 0  # filter type "None" for every row
    raw[:, 1:] = np.ascontiguousarray(rgb[:, :, :3]).reshape(h, 3 * w)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))


_FONT_FILES = {(False, False): "DejaVuSans.ttf", (True, False): "DejaVuSans-Bold.ttf",
               (False, True): "DejaVuSans-Oblique.ttf", (True, True): "DejaVuSans-BoldOblique.ttf"}


@lru_cache(maxsize=64)
def _font(size_px: float, bold: bool, italic: bool):
    from PIL import ImageFont

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", _FONT_FILES[bold, italic])
    return ImageFont.truetype(path, size_px)


# matplotlib's (ha, va) -> Pillow's two-letter text anchor
_H = {"left": "l", "center": "m", "right": "r"}
_V = {"bottom": "d", "baseline": "s", "center": "m", "top": "a"}


@dataclass(eq=False)
class Label:
    """A number drawn on top of the figure, fast (see :class:`BlitFigure`).

    Attributes:
        text: the string (one line).
        x, y: position in ``coords`` of ``ax`` (``"data"`` or ``"axes"``), or of
            the figure when ``ax`` is None (``"figure"`` fractions).
        offset: (dx, dy) in points added to the position.
        ha, va: alignment as in matplotlib (``"left"``, ``"center"``, ...;
            ``"bottom"``, ``"baseline"``, ``"center"``, ``"top"``).
        size: font size in points. bold, italic: the DejaVu Sans face.
        color: any matplotlib colour.
        visible: draw it or not.
        background: colour of a box drawn behind the text, or None.
    """

    ax: object
    x: float
    y: float
    text: str = ""
    offset: tuple[float, float] = (0.0, 0.0)
    ha: str = "center"
    va: str = "center"
    size: float = 9.0
    bold: bool = False
    italic: bool = False
    color: str = "black"
    coords: str = "data"
    visible: bool = True
    background: str | None = None


class BlitFigure:
    """A matplotlib Figure on an Agg canvas, redrawn cheaply on every update.

    Three layers:

    * the **background**: every ordinary artist, drawn once by Agg (axes,
      ticks, the shape of a graph) and kept as a bitmap;
    * **dynamic artists** (:meth:`dynamic`): lines, bars, images that move;
      restored background + only these are drawn by Agg on each update;
    * **labels** (:meth:`label`): the numbers. matplotlib lays out every text
      afresh on each draw (about 1 ms a label); these are drawn by Pillow's
      FreeType renderer with the same DejaVu Sans font, some 30 times faster,
      which is what keeps a figure with 40 changing numbers under 50 ms.

    Usage::

        bf = BlitFigure((9, 4))
        ax = bf.fig.add_subplot()
        line = bf.dynamic(ax.plot([], [])[0])
        lab = bf.label(ax, 0.5, 0.5, size=10, color="red")
        line.set_data(x, y); lab.text = "0.25"
        png = bf.png()

    Call :meth:`invalidate` after changing anything static (axis limits, a
    static artist); the next :meth:`png` redraws everything.
    """

    def __init__(self, figsize, dpi: int = 100) -> None:
        self.fig = Figure(figsize=figsize, dpi=dpi, facecolor="white")
        self.canvas = FigureCanvasAgg(self.fig)
        self._dynamic: list = []
        self.labels: list[Label] = []
        self._background = None

    def dynamic(self, artist):
        """Mark ``artist`` as one that changes on updates; returns it."""
        artist.set_animated(True)
        self._dynamic.append(artist)
        return artist

    def label(self, ax, x: float, y: float, text: str = "", **kwargs) -> Label:
        """Add a fast :class:`Label` at ``(x, y)`` (data coordinates of ``ax``)."""
        lab = Label(ax, x, y, text, **kwargs)
        self.labels.append(lab)
        return lab

    def invalidate(self) -> None:
        self._background = None

    def draw(self) -> None:
        """Bring the Agg canvas up to date (background once, dynamic artists every time)."""
        if self._background is None:
            self.canvas.draw()  # animated (dynamic) artists are skipped here
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
        else:
            self.canvas.restore_region(self._background)
        renderer = self.canvas.get_renderer()
        for artist in self._dynamic:
            if artist.get_visible():
                artist.draw(renderer)

    def _pixel(self, lab: Label, height: int) -> tuple[float, float]:
        if lab.ax is None:
            tr = self.fig.transFigure
        else:
            tr = lab.ax.transAxes if lab.coords == "axes" else lab.ax.transData
        px, py = tr.transform((lab.x, lab.y))
        k = self.fig.dpi / 72.0
        return px + lab.offset[0] * k, height - (py + lab.offset[1] * k)

    def image(self):
        """The finished frame as a Pillow RGB image (canvas + labels)."""
        from PIL import Image, ImageDraw

        self.draw()
        w, h = self.canvas.get_width_height()
        im = Image.frombuffer("RGBA", (w, h), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        im = im.convert("RGB")  # a copy: the canvas's own buffer stays untouched
        draw = ImageDraw.Draw(im)
        k = self.fig.dpi / 72.0
        for lab in self.labels:
            if not lab.visible or not lab.text:
                continue
            xy = self._pixel(lab, h)
            font = _font(round(lab.size * k * 2) / 2, lab.bold, lab.italic)
            anchor = _H[lab.ha] + _V[lab.va]
            if lab.background:
                x0, y0, x1, y1 = draw.textbbox(xy, lab.text, font=font, anchor=anchor)
                draw.rounded_rectangle((x0 - 2, y0 - 1, x1 + 2, y1 + 1), radius=3,
                                       fill=to_hex(lab.background))
            draw.text(xy, lab.text, fill=to_hex(lab.color), font=font, anchor=anchor)
        return im

    def rgb(self) -> np.ndarray:
        return np.asarray(self.image())

    def png(self) -> bytes:
        return encode_png(self.rgb())
