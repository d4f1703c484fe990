"""Columns aligned the way Go's text/tabwriter aligns them, so output matches ctr's.

Cells are separated by tabs; a line's last cell is aligned only if a tab ends
it. A column is as wide as its widest cell plus ``padding`` (at least
``minwidth``); with ``padchar="\\t"`` widths round up to ``tabwidth`` and the
padding is written as tabs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["format_table", "human_bytes", "human_duration", "human_size"]


def format_table(lines: Sequence[str], minwidth: int, tabwidth: int, padding: int, padchar: str = " ") -> str:
    rows = [line.split("\t") for line in lines]
    widths: list[int] = []
    for row in rows:
        for column, cell in enumerate(row[:-1]):
            width = max(minwidth, len(cell) + padding)
            if column == len(widths):
                widths.append(width)
            else:
                widths[column] = max(widths[column], width)
    out = []
    for row in rows:
        text = "".join(_pad(cell, widths[column], tabwidth, padchar) for column, cell in enumerate(row[:-1]))
        out.append(text + row[-1])
    return "\n".join(out) + "\n"


def _pad(cell: str, width: int, tabwidth: int, padchar: str) -> str:
    if padchar == "\t":
        width = math.ceil(width / tabwidth) * tabwidth
        return cell + "\t" * math.ceil((width - len(cell)) / tabwidth)
    return cell + padchar * (width - len(cell))


def human_size(size: float) -> str:
    """docker/go-units HumanSize: decimal units, four significant digits ("1.57kB", "31.37MB")."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{_go_g(size, 4)}{units[i]}"


def human_bytes(size: float) -> str:
    """ctr's progress.Bytes: binary units, one decimal ("2.7 MiB")."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.1f} {units[i]}"


def human_duration(seconds: float) -> str:
    """docker/go-units HumanDuration, as ctr prints an AGE."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _go_g(value: float, precision: int) -> str:
    """Go's %.4g: like Python's, but never an exponent for the magnitudes printed here."""
    text = f"{value:.{precision}g}"
    if "e" in text:
        text = f"{value:.0f}"
    return text
