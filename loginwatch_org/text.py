"""Text that fits a terminal: lines broken between words, never inside an address, an id or an ARN.

Pure and import-free, so ``validate`` and ``export`` can use it and still start fast.
"""

from __future__ import annotations

import re

# A place a line may break: after a run of spaces, or after a comma (a recipient list has no spaces).
_BREAKS = re.compile(r"[^\s,]*,|[^\s,]+|\s+")
# Continuation lines sit this much deeper than the line they continue.
HANGING_INDENT = 4


def words(text: str) -> list[str]:
    """The pieces ``wrap`` never breaks."""
    return [piece for piece in _BREAKS.findall(text) if not piece.isspace()]


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken only between words (a word longer than the width keeps its
    own line whole: an address cut in two is worse than a long line)."""
    if len(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for piece in _BREAKS.findall(text):
        if piece.isspace():
            if line:
                line += piece
            continue
        if line and len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


def fit(text: str, width: int | None) -> str:
    """Every line of ``text`` wrapped to ``width`` (as it is when ``width`` is None: a pipe gets whole lines),
    each continuation indented under its line's own text."""
    if width is None:
        return text
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip())
        pad = " " * (indent + HANGING_INDENT)
        first, *rest = wrap(line.strip(), max(width - len(pad), 20))
        out.append(" " * indent + first)
        out.extend(pad + piece for piece in rest)
    return "\n".join(out)
