"""Figures for the lessons (matplotlib, imported only by the notebooks that draw)."""

from .._drawing import draws as _draws
from .._drawing import plt as _plt


@_draws
def show() -> None:
    """Show the figures drawn so far (``matplotlib.pyplot.show``; nothing while grading)."""
    _plt.show()
