"""Load YAML into plain Python data and remember where every value was written.

pyyaml's own loaders drop positions and silently keep the last of two equal
keys; a user needs both the line of a mistake and to hear about the second
`sdxl:` they pasted. So we compose the node tree and build the data ourselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from bakery.errors import Problem
from handler.schema_errors import dotted

Path = tuple  # a key path: ("model_sets", "sdxl", "models", 0, "url")


@dataclass
class Marked:
    """The loaded data plus (line, col) of each value and of each mapping key, 1-based."""

    data: object
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def at(self, path: Path) -> tuple[int, int]:
        """Where the value at `path` was written, or its nearest written parent."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key_at(self, path: Path) -> tuple[int, int]:
        """Where the key naming `path` was written (falls back to the value)."""
        return self.keys.get(path) or self.at(path)


def items_of(mapping: object):
    """A mapping's items, or none when the file has something else there."""
    return mapping.items() if isinstance(mapping, dict) else ()


def keys_of(mapping: object):
    return mapping.keys() if isinstance(mapping, dict) else ()


def get_in(data: object, path: Path) -> object:
    """The value at `path`, or None where the file has no mapping on the way."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def load(text: str) -> Marked:
    """Parse `text`. YAML syntax errors come back as one Problem, never an exception."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        marked = Marked(data=None)
        if root is not None:
            marked.data = _build(loader, root, (), marked)
        return marked
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _pos(mark) if mark else (1, 1)
        what = f"YAML syntax error: {exc.problem}"
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        elif exc.context:
            what += f" ({exc.context})"
        fix = "check the indentation and quoting on this line and the one above"
        if exc.context and "flow" in exc.context and exc.context_mark:
            fix = f"close the bracket opened on line {exc.context_mark.line + 1}"
        if "'\\t'" in str(exc.problem):
            what = "YAML syntax error: a tab character where YAML expects spaces"
            fix = "indent with spaces; YAML does not allow tabs"
        return Marked(data=None, problems=[Problem(line, col, "(syntax)", what, fix)])
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, marked: Marked) -> object:
    marked.values[path] = _pos(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int)):
                key = str(key)
            child = (*path, key)
            if key in out:
                first_line = marked.keys[child][0]
                marked.problems.append(
                    Problem(
                        *_pos(key_node.start_mark),
                        dotted(child),
                        f"'{key}' is written twice in this mapping (first on line {first_line})",
                        "keep one of them; a second entry would silently replace the first",
                    )
                )
                continue
            marked.keys[child] = _pos(key_node.start_mark)
            out[key] = _build(loader, value_node, child, marked)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), marked) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
