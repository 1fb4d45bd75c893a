"""YAML reading that remembers where every value came from.

Error messages must name the file, the line and the field, so the loader keeps a map from each value's
path (``("accounts", 2, "id")``) to its line, and the exact text that was written there: an unquoted
``012345670123`` is an integer to YAML, and only the raw text lets us tell the user what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    line: int
    raw: str | None = None  # the scalar as written, for plain (unquoted) scalars only
    quoted: bool = False


@dataclass
class SourceMap:
    file: str
    locations: dict[Path_, Location] = field(default_factory=dict)
    # Line of each mapping key, by the path of its value: an unknown key is reported where it is written,
    # not where its (perhaps nested, perhaps empty) value starts.
    key_lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """Line of the value at ``path``, or of its closest ancestor that exists in the file."""
        for end in range(len(path), -1, -1):
            location = self.locations.get(tuple(path[:end]))
            if location is not None:
                return location.line
        return None

    def key_line(self, path: Path_) -> int | None:
        """Line of the key whose value is at ``path``, falling back to the value's line."""
        return self.key_lines.get(tuple(path)) or self.line_of(path)

    def location(self, path: Path_) -> Location | None:
        return self.locations.get(tuple(path))


class YamlError(Exception):
    """The file is not YAML we can read; carries a ready-to-print, located message."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


_constructor = yaml.SafeLoader("")  # only used for scalar resolution; holds no stream state


def _construct(node: yaml.Node, path: Path_, source: SourceMap) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        source.locations[path] = Location(line)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, (*path, "<key>"), source)
            if not isinstance(key, str):
                raise YamlError(source.file, key_node.start_mark.line + 1, f"key {key!r} must be a string")
            if key in result:
                raise YamlError(
                    source.file,
                    key_node.start_mark.line + 1,
                    f"key '{key}' appears twice in the same mapping (first at line "
                    f"{source.locations[(*path, key)].line}); YAML would silently keep only the last one.",
                )
            source.key_lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, (*path, key), source)
        source.locations.pop((*path, "<key>"), None)
        return result
    if isinstance(node, yaml.SequenceNode):
        source.locations[path] = Location(line)
        return [_construct(item, (*path, index), source) for index, item in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode):
        quoted = node.style in ("'", '"')
        source.locations[path] = Location(line, raw=node.value, quoted=quoted)
        return _constructor.construct_object(node, deep=True)
    raise YamlError(source.file, line, "unsupported YAML node")  # pragma: no cover - aliases resolve above


def load_yaml(path: Path, display_name: str | None = None) -> tuple[Any, SourceMap]:
    """Parse ``path`` and return its data with the line of every value."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(name, None, "file not found; pass --config PATH or create it") from None
    except (OSError, UnicodeDecodeError) as error:
        raise YamlError(name, None, f"cannot read the file: {error}") from None
    source = SourceMap(name)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        problem = error.problem or "invalid YAML"
        raise YamlError(name, line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise YamlError(name, None, f"invalid YAML: {error}") from None
    if node is None:
        raise YamlError(name, None, "the file is empty")
    try:
        return _construct(node, (), source), source
    except yaml.constructor.ConstructorError as error:
        mark = error.problem_mark
        raise YamlError(name, mark.line + 1 if mark else None, f"invalid YAML: {error.problem}") from None
