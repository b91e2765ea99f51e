"""The book's figure style: one set of matplotlib settings for every chapter plot and diagram.

A figure is drawn at its ``figsize`` and then scaled to the book's content column (672 px wide in a 1280 px
window, measured in Chromium). Text stays readable when the figure is not much wider than the column and its fonts are not
too small: :data:`MIN_FONT_PT` is the smallest font any figure should use, :data:`COLUMN_INCHES` the width a
figure is drawn at so that 1 pt of text is about 1 pt on the page. ``book/matplotlibrc`` holds the same
settings (written by :func:`write_matplotlibrc`, checked by ``tests/test_figures.py``), so every chapter kernel,
whose working folder is ``book/``, starts with them without any code.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

MIN_FONT_PT = 10.0    # no text smaller than this in a figure drawn COLUMN_INCHES wide
COLUMN_INCHES = 7.5   # the widest a figure is drawn: 720 px at 96 px per inch, shown at >= 0.93 of its size

BOOK_STYLE: dict[str, object] = {
    "font.family": "sans-serif",
    "font.sans-serif": "DejaVu Sans, Arial, Helvetica, sans-serif",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 12,
    "figure.figsize": "7.5, 4",
    "figure.dpi": 100,
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "axes.formatter.useoffset": False,   # no "+8.317" offsets: the axis shows the numbers themselves
    "axes.formatter.limits": "-4, 6",
    # deterministic SVGs: the same ids on every run, text kept as text (searchable, and its size measurable)
    "svg.hashsalt": "gpt2book",
    "svg.fonttype": "none",
}


def _rc_value(value: object) -> object:
    if isinstance(value, str) and "," in value:
        return [part.strip() for part in value.split(",")]
    return value


def rc_params() -> dict[str, object]:
    """:data:`BOOK_STYLE` as values ``matplotlib.rcParams`` accepts (lists for the comma-separated entries)."""
    out = {key: _rc_value(value) for key, value in BOOK_STYLE.items()}
    out["font.family"] = [out["font.family"]] if isinstance(out["font.family"], str) else out["font.family"]
    out["figure.figsize"] = [float(v) for v in out["figure.figsize"]]
    out["axes.formatter.limits"] = [int(v) for v in out["axes.formatter.limits"]]
    return out


def use_book_style() -> None:
    """Apply the book's style to matplotlib for the rest of the session."""
    matplotlib.rcParams.update(rc_params())


@contextmanager
def book_style():
    """``with book_style(): ...`` draws with the book's style and restores the previous settings after."""
    with matplotlib.rc_context(rc_params()):
        yield


def matplotlibrc_text() -> str:
    """The ``matplotlibrc`` file that gives every chapter kernel the book's style."""
    lines = ["# The book's figure style, read by matplotlib from the working folder (book/) of every chapter.",
             "# Written by gpt2lib.plotting.write_matplotlibrc(); edit BOOK_STYLE there, not this file."]
    lines += [f"{key}: {'True' if value is True else 'False' if value is False else value}"
              for key, value in BOOK_STYLE.items()]
    return "\n".join(lines) + "\n"


def write_matplotlibrc(path: str | Path) -> Path:
    """Write :func:`matplotlibrc_text` to ``path`` (a file this function owns: book/matplotlibrc)."""
    path = Path(path)
    path.write_text(matplotlibrc_text(), encoding="utf-8")
    return path
