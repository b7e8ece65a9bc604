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


# Bounds on what one file may cost to load (stated in the README): a few alias
# lines can otherwise stand for billions of values ("billion laughs"), and deep
# nesting exhausts Python's recursion.
MAX_VALUES = 100_000  # values after expanding every alias
MAX_DEPTH = 50  # mappings and lists inside each other


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, what: str, fix: str):
        self.node, self.what, self.fix = node, what, fix


def load(text: str) -> Marked:
    """Parse `text`. YAML syntax errors come back as one Problem, never an exception."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters already (ReaderError)
        root = loader.get_single_node()
        marked = Marked(data=None)
        if root is not None:
            marked.data = _build(loader, root, (), marked, [0])
        return marked
    except _TooBig as exc:
        return Marked(
            data=None,
            problems=[Problem(*_pos(exc.node.start_mark), "(top level)", exc.what, exc.fix)],
        )
    except RecursionError:
        what = f"the file nests more than {MAX_DEPTH} levels deep"
        return Marked(data=None, problems=[Problem(1, 1, "(syntax)", what, _FLATTEN)])
    except yaml.reader.ReaderError as exc:
        line, col = _reader_position(text, exc.position)
        what = f"YAML syntax error: the control character U+{exc.character:04X} is not allowed"
        fix = "remove it (only tabs and line breaks may appear, and tabs only inside text)"
        return Marked(data=None, problems=[Problem(line, col, "(syntax)", what, fix)])
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
        if loader is not None:
            loader.dispose()


_FLATTEN = "variants.yaml needs only a few levels; write the value out flat"


def _reader_position(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: Path, marked: Marked, count: list
) -> object:
    count[0] += 1
    if count[0] > MAX_VALUES:
        raise _TooBig(
            node,
            f"the file stands for more than {MAX_VALUES:,} values once its aliases (*name) "
            "are expanded",
            "use fewer aliases; variants.yaml needs only a few hundred values",
        )
    if len(path) > MAX_DEPTH:
        raise _TooBig(node, f"the file nests more than {MAX_DEPTH} levels deep", _FLATTEN)
    marked.values[path] = _pos(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor) come first, then own keys
        merged = len(node.value) - own
        out: dict = {}
        written: set = set()  # keys written in this mapping itself (not merged in)
        for i, (key_node, value_node) in enumerate(node.value):
            key = _key(key_node, path, marked)
            if key is None:
                continue
            child = (*path, key)
            if key in written:
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
            if i >= merged:  # an explicit key overrides a merged one, as YAML says
                written.add(key)
            marked.keys[child] = _pos(key_node.start_mark)
            out[key] = _build(loader, value_node, child, marked, count)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), marked, count) for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def _key(node: yaml.Node, path: Path, marked: Marked) -> str | None:
    """A mapping key as text (every name in variants.yaml is text), or None if it cannot be one."""
    if not isinstance(node, yaml.ScalarNode):
        marked.problems.append(
            Problem(
                *_pos(node.start_mark),
                dotted(path),
                "a key here is a list or a mapping",
                "write a plain name before the colon",
            )
        )
        return None
    # A name such as 128 or true is read as a number or a boolean; the file means text.
    return node.value
