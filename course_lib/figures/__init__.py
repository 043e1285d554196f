"""Figures for the lessons (matplotlib, imported only by the notebooks that draw)."""
