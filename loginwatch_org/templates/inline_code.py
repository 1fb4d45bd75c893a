"""Python source as a template inlines it: the module's own code, without the comments and docstrings.

A template body sent to StackSets may hold at most 51,200 bytes, and the notifier's explanations are as long as
its code. They stay in the module for its readers; the template carries what runs, indented one space a level
instead of four, and a plain string in double quotes that holds no single quote or backslash is written in
single quotes (JSON escapes every double quote). Nothing else is rewritten (no reformatting; f-strings stay as
written, since Python 3.12 tokenizes them differently), so the body is the same on every Python version that
renders it.
"""

from __future__ import annotations

import ast
import io
import tokenize

Span = tuple[int, int, int, int]  # start row, start column, end row, end column (rows from 1)


def _docstrings(tree: ast.AST) -> list[tuple[Span, bool]]:
    """Each docstring's span, and whether it is its body's only statement (it must then become ``...``)."""
    found: list[tuple[Span, bool]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            end_row, end_col = first.end_lineno or first.lineno, first.end_col_offset or 0
            found.append(((first.lineno, first.col_offset, end_row, end_col), len(node.body) == 1))
    return found


def _string_rows(tree: ast.AST, docstrings: set[int]) -> set[int]:
    """Rows inside a multi-line string literal, whose blank lines are part of the value."""
    rows: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant | ast.JoinedStr) or node.lineno in docstrings:
            continue
        rows.update(range(node.lineno + 1, (node.end_lineno or node.lineno) + 1))
    return rows


def without_commentary(source: str) -> str:
    """``source`` without comments, docstrings and the blank lines they leave, indented one space a level."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    cuts: list[tuple[Span, str]] = [(span, "..." if alone else "") for span, alone in docstrings]
    docstring_starts = {span[:2] for span, _ in docstrings}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            cuts.append(((*token.start, *token.end), ""))
        elif token.type == tokenize.STRING and token.start not in docstring_starts:
            swapped = _in_single_quotes(token.string)
            if swapped is not None:
                cuts.append(((*token.start, *token.end), swapped))
    lines = source.splitlines(keepends=True)
    # Cut from the end, so earlier spans keep their positions; a cut keeps its rows (blank) so that rows keep
    # their numbers.
    for (start_row, start_col, end_row, end_col), replacement in sorted(cuts, reverse=True):
        head = lines[start_row - 1][:start_col]
        tail = lines[end_row - 1][end_col:]
        lines[start_row - 1 : end_row] = [head + replacement + tail] + ["\n"] * (end_row - start_row)
    protected = _string_rows(tree, {span[0] for span, _ in docstrings})
    kept = [
        line if row in protected else _one_space_a_level(line)
        for row, line in enumerate(lines, start=1)
        if line.strip() or row in protected
    ]
    return "".join(kept)


def _in_single_quotes(literal: str) -> str | None:
    """A one-line ``"..."`` literal (prefix ``b``/``r``/``u`` allowed, never ``f``) as ``'...'``; None when it
    cannot be swapped without changing its value or escaping."""
    prefix = literal[: len(literal) - len(literal.lstrip("bBrRuU"))]
    body = literal[len(prefix) :]
    if "f" in prefix.lower() or not body.startswith('"') or body.startswith('"""') or "\n" in literal:
        return None
    inner = body[1:-1]
    if "'" in inner or "\\" in inner or "\n" in inner:
        return None
    return f"{prefix}'{inner}'"


def _one_space_a_level(line: str) -> str:
    # The module is formatted with four spaces a level (ruff format), so a quarter keeps every block's depth;
    # inside brackets indentation carries no meaning.
    text = line.strip()
    return " " * ((len(line) - len(line.lstrip(" "))) // 4) + text + "\n"
