"""Variant entries → the variants they make: model sets × CUDA lines × node sets, less excludes.

Every name an entry uses is checked here, and so are the clashes only the
expanded names show (a variant made twice, a variant named like a bake group).
"""

from __future__ import annotations

from bakery.config import base_target, variant_name
from bakery.errors import Problem
from bakery.marked_yaml import Marked, keys_of
from handler.schema_errors import did_you_mean, dotted


def expand(marked: Marked) -> tuple[list[tuple[str, str, str | None]], list[Problem]]:
    """Variant entries → (model_set, cuda, node_set) triples, checking every name they use."""
    data = marked.data if isinstance(marked.data, dict) else {}
    known = {
        "model_sets": list(keys_of(data.get("model_sets"))),
        "cuda": list(keys_of(data.get("cuda"))),
        "node_sets": list(keys_of(data.get("node_sets"))),
    }
    singular = {"model_sets": "model set", "cuda": "CUDA line", "node_sets": "node set"}
    problems: list[Problem] = []
    made: list[tuple[str, str, str | None]] = []
    first_seen: dict[str, tuple] = {}
    entries = data.get("variants")
    for e, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue

        def unknown(section, name, path):
            options = ", ".join(known[section]) or f"none — add one under {section}"
            fix = did_you_mean(name, known[section], f"use one of: {options}")
            return Problem(
                *marked.at(path), dotted(path), f"unknown {singular[section]} '{name}'", fix
            )

        lists = {}
        for section in ("model_sets", "cuda", "node_sets"):
            names = entry.get(section, [None] if section == "node_sets" else [])
            names = names if isinstance(names, list) else []
            for i, name in enumerate(names):
                # A name that is not text is the schema's to report (expected text).
                if isinstance(name, str) and name not in known[section]:
                    problems.append(unknown(section, name, ("variants", e, section, i)))
            lists[section] = [n for n in names if n is None or n in known[section]]
        excludes = entry.get("exclude") if isinstance(entry.get("exclude"), list) else []
        for x, rule in enumerate(excludes):
            for field_name, section in (
                ("model_set", "model_sets"),
                ("cuda", "cuda"),
                ("node_set", "node_sets"),
            ):
                if isinstance(rule, dict) and field_name in rule:
                    if isinstance(rule[field_name], str) and rule[field_name] not in known[section]:
                        path = ("variants", e, "exclude", x, field_name)
                        problems.append(unknown(section, rule[field_name], path))
        count = 0
        for ms in lists["model_sets"]:
            for cu in lists["cuda"]:
                for ns in lists["node_sets"]:
                    combo = {"model_set": ms, "cuda": cu, "node_set": ns}
                    if any(_matches(rule, combo) for rule in excludes):
                        continue
                    count += 1
                    name = variant_name(ms, cu, ns)
                    if name in first_seen:
                        path = ("variants", e)
                        problems.append(
                            Problem(
                                *marked.at(path),
                                dotted(path),
                                f"variant '{name}' is also made by {dotted(first_seen[name])}",
                                "list each variant once: remove it here or exclude it",
                            )
                        )
                        continue
                    first_seen[name] = ("variants", e)
                    made.append((ms, cu, ns))
                    if name in known["model_sets"] or name in known["cuda"]:
                        path = ("variants", e)
                        problems.append(
                            Problem(
                                *marked.at(path),
                                dotted(path),
                                f"variant '{name}' would have the name of the bake group of "
                                f"{'model set' if name in known['model_sets'] else 'CUDA line'} "
                                f"'{name}'",
                                "rename that model set or CUDA line",
                            )
                        )
                    if name in {base_target(c) for c in known["cuda"]}:
                        path = ("model_sets", ms)
                        problems.append(
                            Problem(
                                *marked.key_at(path),
                                dotted(path),
                                f"variant '{name}' would have the name of the shared base "
                                f"target for CUDA line '{cu}'",
                                "rename the model set (e.g. 'bare' for one without models)",
                            )
                        )
        named_all = all(lists[s] for s in ("model_sets", "cuda", "node_sets"))
        if count == 0 and named_all and excludes:
            path = ("variants", e, "exclude")
            problems.append(
                Problem(
                    *marked.at(path),
                    dotted(path),
                    "every combination of this entry is excluded, so it builds nothing",
                    "remove the entry or loosen its excludes",
                )
            )
    return made, problems


def _matches(rule: object, combo: dict) -> bool:
    return isinstance(rule, dict) and bool(rule) and all(combo.get(k) == v for k, v in rule.items())
