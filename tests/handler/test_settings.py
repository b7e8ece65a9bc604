"""handler/settings.py is the one declaration of every environment variable the handler reads.

A setting declared in another module, or an environment variable read anywhere
else (os.environ, os.getenv, or a name looked up in a mapping of the
environment), is named here with its file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from handler import settings

HANDLER = Path(settings.__file__).resolve().parent
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+")  # what a variable's name looks like
ENV_MAPPINGS = {"env", "environ", "environment"}  # names a mapping of the environment goes by


def outside_reads(source: str) -> list[tuple[int, str]]:
    """(line, what) for each declaration or environment read in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in ("environ", "environb", "getenv", "getenvb"):
                    found.append((node.lineno, f"from os import {alias.name}"))
        elif isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Name) and node.func.id == "setting")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "setting")
        ):
            found.append((node.lineno, "a setting declared outside handler/settings.py"))
        elif _looks_up_a_variable(node):
            found.append((node.lineno, "a variable looked up by name"))
    return sorted(found)


def _looks_up_a_variable(node: ast.AST) -> bool:
    """env.get("NAME"), env["NAME"] or "NAME" in env, for a mapping called env/environ."""

    def is_env(expr: ast.AST) -> bool:
        return isinstance(expr, ast.Name) and expr.id in ENV_MAPPINGS

    def is_name(expr: ast.AST) -> bool:
        return (
            isinstance(expr, ast.Constant)
            and isinstance(expr.value, str)
            and bool(ENV_NAME.fullmatch(expr.value))
        )

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return (
            node.func.attr in ("get", "pop")
            and is_env(node.func.value)
            and any(is_name(a) for a in node.args[:1])
        )
    if isinstance(node, ast.Subscript):
        return is_env(node.value) and is_name(node.slice)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        return (
            isinstance(node.ops[0], ast.In | ast.NotIn)
            and is_name(node.left)
            and is_env(node.comparators[0])
        )
    return False


def test_the_scan_finds_every_way_of_reading_the_environment():
    source = """
import os
from os import getenv
A = os.environ.get("BAKERY_X")
B = os.getenv("BAKERY_Y")
C = env["RUNPOD_POD_ID"]
D = "HF_TOKEN" in environ
E = settings.setting("BAKERY_Z", 1, "doc")
F = env.get("lowercase key")  # not a variable's name
"""
    assert [line for line, _ in outside_reads(source)] == [3, 4, 5, 6, 7, 8]


def test_no_module_but_settings_declares_or_reads_an_environment_variable():
    found = []
    for path in sorted(HANDLER.rglob("*.py")):
        if path.name == "settings.py" and path.parent == HANDLER:
            continue
        rel = path.relative_to(HANDLER.parent)
        found += [f"{rel}:{line}: {what}" for line, what in outside_reads(path.read_text())]
    assert found == [], (
        "declare the variable in handler/settings.py (name, type, default, doc) and read it "
        "as settings.NAME.get():\n" + "\n".join(found)
    )


def test_every_setting_is_declared_with_a_type_a_default_and_a_doc():
    assert len(settings.REGISTRY) >= 60
    for s in settings.REGISTRY.values():
        assert s.kind in ("str", "int", "float", "bool"), s
        assert len(s.doc) > 20 and s.doc.endswith((".", ")")), s
        if s.default is not None:
            assert isinstance(s.default, {"str": str, "int": int, "float": float,
                                          "bool": bool}[s.kind]), s  # fmt: skip
