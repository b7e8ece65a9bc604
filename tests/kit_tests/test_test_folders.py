"""Each test folder stands on the kit alone: none imports another folder's conftest or test
module (what folders share lives in tests/kit), and the kit's HTTP servers share one base."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def test_no_test_folder_imports_another_folders_conftest_or_test_module():
    crossing = []
    for path in sorted(TESTS.rglob("*.py")):
        folder = path.relative_to(TESTS).parts[0]
        for line, name in imported(path):
            parts = name.split(".")
            if len(parts) < 3 or parts[0] != "tests" or parts[1] in (folder, "kit"):
                continue
            if parts[2] == "conftest" or parts[2].startswith("test_"):
                crossing.append(f"{path.relative_to(TESTS.parent)}:{line}: {name}")
    assert crossing == [], "move what is shared into tests/kit:\n" + "\n".join(crossing)


def test_every_kit_http_server_is_served_through_the_one_base():
    hand_rolled = []
    for path in sorted((TESTS / "kit").rglob("*.py")):
        if path.name == "http_server.py":
            continue
        text = path.read_text(encoding="utf-8")
        for word in ("ThreadingHTTPServer", "serve_forever", "HTTPServer("):
            if word in text:
                hand_rolled.append(f"{path.relative_to(TESTS.parent)}: {word}")
    assert hand_rolled == [], "serve it with tests.kit.http_server.LoopbackServer:\n" + "\n".join(
        hand_rolled
    )
