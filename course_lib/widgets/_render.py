"""Drawing for the explorers: the one module of the package that imports matplotlib.

A slider moves many times a second, so a redraw must be cheap. A
:class:`BlitFigure` draws everything that does not change (axes, ticks, the
shape of a graph) once into a background, and on each update only restores
that background and draws the few *dynamic* artists (numbers, moving points,
coloured edges) on top: the blitting technique of matplotlib's animations, on
an off-screen Agg canvas. The result is sent to the browser as a PNG, encoded
here with the fastest zlib setting.

What a frame costs, and why it is built this way (one core, a 1050×520 figure
with 66 numbers, as a move of lesson 04's network runs it): each number is one
bitmap, made once per text (a few µs a character, :func:`_label_patch`) and
blended into the canvas by Agg, placed with one transform call per axes: under
1 ms for all 66 (pasting glyph by glyph through a transform each took 4.5 ms).
Agg draws the dynamic artists (an explorer draws many alike as one collection,
not one artist each). Pillow packs the RGBA canvas into RGB rows in C, and zlib
(about 2 ns a byte at level 1, the one cost that grows with the figure's area)
compresses the two halves of the frame on two threads at once.
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
from matplotlib.figure import Figure

__all__ = ["BlitFigure", "Label", "bake_labels", "encode_png", "COLORS"]

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


def _adler32_combine(a1: int, a2: int, len2: int) -> int:
    """The Adler-32 of two buffers one after the other, from theirs (zlib's
    adler32_combine, which Python's zlib module does not expose)."""
    base = 65521
    rem = len2 % base
    s1 = a1 & 0xFFFF
    s2 = (rem * s1) % base
    s1 = (s1 + (a2 & 0xFFFF) + base - 1) % base
    s2 = (s2 + ((a1 >> 16) & 0xFFFF) + ((a2 >> 16) & 0xFFFF) + base - rem) % base
    return s1 | (s2 << 16)


def _deflate(part, level: int, last: bool) -> tuple[bytes, int]:
    """Raw deflate of ``part`` (ending byte-aligned, or with the final block if
    ``last``) and its Adler-32."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = c.compress(part) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return out, zlib.adler32(part)


_POOL = None


def _zlib_stream(raw: np.ndarray, level: int) -> bytes:
    """``zlib.compress(raw, level)``'s format, in two halves compressed at once.

    zlib is most of a frame's time (about 2 ns a byte) and releases the GIL: the
    bottom half of the rows is compressed on a second thread while this one does
    the top half, as pigz does. Each half is deflated on its own (the bottom half
    refers to nothing in the top one, so the PNG is a few % bigger), the top half
    ends on a byte boundary (a sync flush), and the checksum of the whole is
    combined from the halves'.
    """
    global _POOL
    if raw.nbytes < 1 << 18 or (os.cpu_count() or 1) < 2:
        return zlib.compress(raw, level)
    if _POOL is None or _POOL[0] != os.getpid():  # a forked child has no worker thread
        from concurrent.futures import ThreadPoolExecutor

        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="course-png"))
    half = raw.shape[0] // 2
    bottom = _POOL[1].submit(_deflate, raw[half:], level, True)
    top, a1 = _deflate(raw[:half], level, False)
    rest, a2 = bottom.result()
    adler = _adler32_combine(a1, a2, raw[half:].nbytes)
    return b"\x78\x01" + top + rest + struct.pack(">I", adler)


def encode_png(rgb: np.ndarray, level: int = 1) -> bytes:
    """An (h, w, 3) or (h, w, 4) uint8 image as an RGB PNG (no row filter, zlib ``level``).

    About four times as fast as PIL's encoder for a figure-sized image, which
    matters when it runs on every slider move: no row filter, and the zlib
    stream compressed in two halves at once (:func:`_zlib_stream`). An alpha
    channel is dropped (the figures are opaque).
    """
    h, w = rgb.shape[:2]
    raw = np.empty((h, 1 + 3 * w), dtype=np.uint8)
    raw[:, 0] = 0  # filter type "None" for every row
    if rgb.shape[2] == 3:
        raw[:, 1:] = rgb.reshape(h, 3 * w)  # contiguous rows: a plain copy
    else:  # dropping every 4th byte is a strided copy, 4 times slower
        raw[:, 1:].reshape(h, w, 3)[...] = rgb[:, :, :3]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", _zlib_stream(raw, level)) + _chunk(b"IEND", b""))


_FONT_FILES = {(False, False): "DejaVuSans.ttf", (True, False): "DejaVuSans-Bold.ttf",
               (False, True): "DejaVuSans-Oblique.ttf", (True, True): "DejaVuSans-BoldOblique.ttf"}


@lru_cache(maxsize=64)
def _font(size_px: float, bold: bool, italic: bool):
    from PIL import ImageFont

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", _FONT_FILES[bold, italic])
    return ImageFont.truetype(path, size_px)


@lru_cache(maxsize=64)
def _metrics(font_key: tuple) -> tuple[int, int]:
    """(ascent, descent) of a font, in pixels."""
    return _font(*font_key).getmetrics()


@lru_cache(maxsize=4096)
def _glyph(font_key: tuple, ch: str):
    """One character, rasterised once: (its coverage as an (h, w) uint8 array or None,
    x and y of the array's top left corner from the pen on the baseline, y down, the
    advance to the next character).

    A label is then put together glyph by glyph: numbers change on every move, the
    digits they are made of do not, and FreeType's rasterising was most of a frame's
    time (kerning is left out; DejaVu Sans's digits have none).
    """
    from PIL import Image, ImageDraw

    font = _font(*font_key)
    x0, y0, x1, y1 = font.getbbox(ch, anchor="ls")
    advance = font.getlength(ch)
    if x1 <= x0 or y1 <= y0:
        return None, 0, 0, advance
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(mask).text((-x0, -y0), ch, font=font, fill=255, anchor="ls")
    return np.asarray(mask), x0, y0, advance


@lru_cache(maxsize=256)
def _rgb(color) -> tuple[int, int, int]:
    from matplotlib.colors import to_rgb

    return tuple(round(255 * c) for c in to_rgb(color))


@lru_cache(maxsize=512)
def _box(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The coverage (h, w) of a rounded box drawn at ``box`` in an image of ``size``."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(box, radius=3, fill=255)
    return np.asarray(mask)


@lru_cache(maxsize=8192)
def _label_patch(text: str, font_key: tuple, color: tuple, background: tuple | None):
    """One label drawn once: (an (h, w, 4) uint8 RGBA bitmap, rows bottom-up; x and y of
    its top left corner from the pen's start on the baseline, y down; the text's
    advance width; the font's ascent and descent).

    A frame then blends one bitmap per label (a label whose number did not change
    since an earlier frame costs one blend), not one per character. A new text
    costs a numpy maximum per character (the glyphs are rasterised once each,
    :func:`_glyph`) and a few whole-patch operations. ``background``: the RGB of
    a rounded box behind the text (opaque), or None.
    """
    ascent, descent = _metrics(font_key)
    placed, pen = [], 0.0
    for ch in text:
        mask, gx, gy, advance = _glyph(font_key, ch)
        if mask is not None:
            placed.append((mask, round(pen + gx), gy))
        pen += advance
    width = pen
    boxes = [(x, y, x + m.shape[1], y + m.shape[0]) for m, x, y in placed]
    box = None
    if background is not None:
        box = (-2, -ascent - 1, round(width) + 2, descent + 1)  # corners included
        boxes.append((box[0], box[1], box[2] + 1, box[3] + 1))
    if not boxes:
        return None, 0, 0, width, ascent, descent
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    ink = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    for m, x, y in placed:
        r = ink[y - y0:y - y0 + m.shape[0], x - x0:x - x0 + m.shape[1]]
        np.maximum(r, m, out=r)  # overlapping glyph edges: the darker wins
    ink = ink[::-1]  # rows bottom-up, as Agg's draw_image takes them
    patch = np.empty(ink.shape + (4,), dtype=np.uint8)
    if box is None:
        patch[:, :, :3] = color
        patch[:, :, 3] = ink
    else:
        a = ink[:, :, None].astype(np.uint16)
        patch[:, :, :3] = (np.array(background, np.uint16) * (255 - a)
                           + np.array(color, np.uint16) * a + 127) // 255
        shape = _box((x1 - x0, y1 - y0),
                     (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0))[::-1]
        np.maximum(shape, ink, out=patch[:, :, 3])
    return patch, x0, y0, width, ascent, descent


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
      afresh on each draw (about 1 ms a label); these are rasterised by Pillow's
      FreeType renderer with the same DejaVu Sans font, once per text (cached),
      and blended into the canvas by Agg: some 50 times faster, which is what
      keeps a figure with 60 changing numbers within a few milliseconds.

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
        """Bring the Agg canvas up to date: the background (drawn once), then the
        dynamic artists and the labels, every time."""
        if self._background is None:
            self.canvas.draw()  # animated (dynamic) artists are skipped here
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
        else:
            self.canvas.restore_region(self._background)
        renderer = self.canvas.get_renderer()
        for artist in self._dynamic:
            if artist.get_visible():
                artist.draw(renderer)
        self._draw_labels(renderer)

    def _pixels(self, labels: list[Label], height: int) -> list[tuple[float, float]]:
        """Each label's anchor in pixels (from the top left), one transform per axes."""
        groups: dict[tuple, list[int]] = {}
        for i, lab in enumerate(labels):
            groups.setdefault((id(lab.ax), lab.coords if lab.ax is not None else ""),
                              []).append(i)
        out = [(0.0, 0.0)] * len(labels)
        k = self.fig.dpi / 72.0
        for members in groups.values():
            first = labels[members[0]]
            if first.ax is None:
                tr = self.fig.transFigure
            else:
                tr = first.ax.transAxes if first.coords == "axes" else first.ax.transData
            xy = tr.transform(np.array([(labels[i].x, labels[i].y) for i in members],
                                       dtype=float).reshape(-1, 2)).tolist()
            for i, (px, py) in zip(members, xy, strict=True):
                dx, dy = labels[i].offset
                out[i] = (px + dx * k, height - (py + dy * k))
        return out

    def _draw_labels(self, renderer) -> None:
        """Blend each label's cached bitmap into the canvas (Agg's own image blending,
        the way matplotlib draws an imshow)."""
        shown = [lab for lab in self.labels if lab.visible and lab.text]
        if not shown:
            return
        h = self.canvas.get_width_height()[1]
        k = self.fig.dpi / 72.0
        gc = renderer.new_gc()
        for lab, (x, y) in zip(shown, self._pixels(shown, h), strict=True):
            font_key = (round(lab.size * k * 2) / 2, lab.bold, lab.italic)
            bg = _rgb(lab.background) if lab.background else None
            patch, px, py, width, ascent, descent = _label_patch(
                lab.text, font_key, _rgb(lab.color), bg)
            if patch is None:
                continue
            x0 = x - {"l": 0.0, "m": width / 2, "r": width}[_H[lab.ha]]
            base = y + {"a": ascent, "m": (ascent - descent) / 2, "s": 0.0,
                        "d": -descent}[_V[lab.va]]
            top = round(base) + py  # pixels from the top
            renderer.draw_image(gc, round(x0) + px, h - top - patch.shape[0], patch)
        gc.restore()

    def _canvas_image(self):
        """The canvas as a Pillow RGBA image sharing its pixels (read-only, no copy)."""
        from PIL import Image

        w, h = self.canvas.get_width_height()
        return Image.frombuffer("RGBA", (w, h), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)

    def image(self):
        """The finished frame as a Pillow RGB image (canvas + labels), a copy."""
        self.draw()
        return self._canvas_image().convert("RGB")

    def rgb(self) -> np.ndarray:
        return np.asarray(self.image())

    def png(self) -> bytes:
        """The finished frame as PNG bytes."""
        self.draw()
        w, h = self.canvas.get_width_height()
        # Pillow packs RGBA into RGB bytes in C, 10 times faster than numpy's strided copy
        rgb = self._canvas_image().tobytes("raw", "RGB")
        return encode_png(np.frombuffer(rgb, dtype=np.uint8).reshape(h, w, 3))


def bake_labels(labels, fig) -> list:
    """Turn :class:`Label` objects into ordinary matplotlib texts of ``fig``.

    A static figure drawn with the explorers' drawing code (which writes its numbers
    as Labels) keeps them this way: the same place, size, colour and box, now part
    of the Figure (so ``plt.show()`` or ``savefig`` includes them). Returns the texts.
    """
    from matplotlib.transforms import offset_copy

    texts = []
    for lab in labels:
        if not lab.visible or not lab.text:
            continue
        if lab.ax is None:
            base, owner = fig.transFigure, fig
        else:
            base = lab.ax.transAxes if lab.coords == "axes" else lab.ax.transData
            owner = lab.ax
        tr = offset_copy(base, fig=fig, x=lab.offset[0], y=lab.offset[1], units="points")
        bbox = (dict(boxstyle="round,pad=0.1", facecolor=lab.background, edgecolor="none")
                if lab.background else None)
        texts.append(owner.text(lab.x, lab.y, lab.text, transform=tr, ha=lab.ha, va=lab.va,
                                fontsize=lab.size, color=lab.color, bbox=bbox, zorder=5,
                                fontweight="bold" if lab.bold else "normal",
                                fontstyle="italic" if lab.italic else "normal"))
    return texts
