"""The notifier's source as the template inlines it (``templates/inline_code.py``)."""

from __future__ import annotations

import ast

from loginwatch_org.templates.inline_code import without_commentary

SOURCE = '''\
"""The module's docstring."""


def handler(event, context):
    """Only a docstring would be left: it becomes ``...``."""


def greet(name):
    # A comment, gone.
    plain = "hello"  # and this one
    quoted = "it's"
    escaped = "tab\\there"
    raw = r"[?#]"
    formatted = f"{name!r} says {plain}"
    text = """line one

line three"""
    return plain, quoted, escaped, raw, formatted, text
'''


def test_the_program_is_kept_and_only_its_commentary_and_quotes_change() -> None:
    inlined = without_commentary(SOURCE)
    namespace: dict[str, object] = {}
    exec(compile(inlined, "inlined", "exec"), namespace)
    greet = namespace["greet"]
    assert callable(greet)
    assert greet("ann") == ("hello", "it's", "tab\there", "[?#]", "'ann' says hello", "line one\n\nline three")
    assert "comment" not in inlined and "docstring" not in inlined
    # A plain string in double quotes moves to single quotes; one holding a quote or an escape, or an f-string, stays.
    assert " plain = 'hello'" in inlined and "r'[?#]'" in inlined
    assert '"it\'s"' in inlined and '"tab\\there"' in inlined and 'f"{name!r} says {plain}"' in inlined
    # One space a level; blank lines go, except the one inside the triple-quoted string.
    assert inlined.startswith("def handler(event, context):\n ...\ndef greet(name):\n plain = ")
    assert '"""line one\n\nline three"""' in inlined
    # The same statements as the source, once its docstrings are set aside.
    body = ast.parse(SOURCE).body[1:]
    body[0].body = [ast.Expr(ast.Constant(...))]  # type: ignore[attr-defined]
    assert ast.dump(ast.Module(body=body, type_ignores=[])) == ast.dump(ast.parse(inlined))
