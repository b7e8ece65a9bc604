"""Add blocks to variants.yaml as text, so every comment, blank line and quote stays.

A round-trip YAML library rewrites what it does not understand the way it likes
(indentation of lists, long lines, quoting); `bakery add` needs a diff a reviewer reads in
seconds. So new entries are written by hand-made text, placed after the last line of the
top-level section they belong to, at the indentation that section already uses, and the
result is loaded again before anything is written.
"""

from __future__ import annotations

import yaml

from bakery.errors import BakeryError

# Where a missing top-level section goes: before the first of these that exists.
ORDER = ("image", "comfyui", "cuda", "node_sets", "model_sets", "variants")


class EditError(BakeryError):
    pass


def scalar(value: object) -> str:
    """One YAML scalar or flow list, as short as YAML allows (null, plain, or quoted)."""
    out = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    return out.removesuffix("\n...\n").rstrip("\n")


def _last_line(node: yaml.Node) -> int:
    """The 0-based line of the last character a node's own content is written on."""
    if isinstance(node, yaml.MappingNode):
        if node.flow_style or not node.value:
            return node.end_mark.line
        return max(max(_last_line(k), _last_line(v)) for k, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        if node.flow_style or not node.value:
            return node.end_mark.line
        return max(_last_line(v) for v in node.value)
    end = node.end_mark
    # A block scalar (| or >) ends at the start of the next line.
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def _section(root: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    return next(((k, v) for k, v in root.value if k.value == key), None)


def child_indent(root: yaml.MappingNode, key: str, default: int = 2) -> int:
    """The column a section's children start at (a list's dash, a mapping's keys)."""
    found = _section(root, key)
    if not found or not found[1].value or found[1].flow_style:
        return default
    first = found[1].value[0]
    node = first[0] if isinstance(first, tuple) else first
    col = node.start_mark.column
    return col - 2 if isinstance(found[1], yaml.SequenceNode) else col


# libyaml's loader where pyyaml has it: the same node marks, ten times faster.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose(text: str) -> yaml.MappingNode:
    root = yaml.compose(text, Loader=LOADER)
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise EditError(
            "variants.yaml is not a block mapping at the top: bakery add cannot edit it"
        )
    return root


def append(text: str, blocks: dict[str, str], root: yaml.MappingNode | None = None) -> str:
    """`text` with each block (lines, already indented) added at the end of its section,
    or in a new section `key:` where ORDER puts it. One parse (`root`, when the caller has
    it): the edits go in bottom-up."""
    root = root or compose(text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    edits: list[tuple[int, int, list[str]]] = []  # (at line, lines replaced, new lines)
    for key, block in blocks.items():
        found = _section(root, key)
        if found is None:
            following = [k for k in ORDER[ORDER.index(key) + 1 :] if _section(root, k)]
            if not following:
                edits.append((len(lines), 0, ["\n", f"{key}:\n", block]))
                continue
            at = _section(root, following[0])[0].start_mark.line
            # Keep a comment block written just above the following section with it.
            while at > 0 and lines[at - 1].lstrip().startswith("#"):
                at -= 1
            edits.append((at, 0, [f"{key}:\n", block, "\n"]))
            continue
        value = found[1]
        empty = isinstance(value, yaml.ScalarNode) and value.value in ("", "~", "null")
        if empty or value.flow_style:
            if value.value and not empty:
                raise EditError(
                    f"variants.yaml writes `{key}` in flow style ({key}: {{...}}): write it as "
                    "a block (one entry per line), then run bakery add again"
                )
            at = found[0].start_mark.line
            edits.append((at, 1, [f"{key}:\n", block]))
            continue
        edits.append((_last_line(value) + 1, 0, [block]))
    for at, replaced, new in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[at : at + replaced] = new
    return "".join(lines)
