"""Hugging Face's, Civitai's and the Comfy Registry's APIs on 127.0.0.1, answering with
the documented response shapes (docs/workflows.md), for `bakery add` tests and bench.

One threaded server; each service under its own prefix, so that the three endpoint
settings (`env()`) point at it. Faults per path prefix (a status, or "slow"), a delay
added to every answer, and every request recorded.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

from tests.kit.http_server import LoopbackServer
from tests.kit.servers import free_port


def commit_of(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class LookupServer:
    def __init__(self):
        self.hf: dict[
            str, dict
        ] = {}  # repo → {"refs": {rev: commit}, "files": {(commit, path): (sha, size)}}
        self.civitai: dict[str, list[dict]] = {}  # version id → files
        self.packs: dict[str, dict] = {}  # id → {"repository": url, "versions": [...]}
        self.faults: dict[str, object] = {}  # path prefix → status code or "slow"
        self.delay_s = 0.0
        self.slow_s = 5.0
        self.requests: list[str] = []
        self.in_flight = 0
        self.most_at_once = 0  # the most requests answered at the same time
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: LoopbackServer | None = None

    def __enter__(self) -> LookupServer:
        self._server = LoopbackServer(_handler(self), port=self.port)
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.close()

    def env(self) -> dict[str, str]:
        return {
            "BAKERY_HF_ENDPOINT": f"{self.url}/hf",
            "BAKERY_CIVITAI_ENDPOINT": f"{self.url}/civitai",
            "BAKERY_REGISTRY_ENDPOINT": f"{self.url}/registry",
        }

    # --- what the services know ------------------------------------------------------------

    def hf_file(self, repo: str, path: str, sha256: str, size: int, branch: str = "main") -> str:
        """A file of `repo` at the commit `branch` points at; returns that commit."""
        entry = self.hf.setdefault(repo, {"refs": {}, "files": {}})
        commit = entry["refs"].setdefault(branch, commit_of(f"{repo}@{branch}"))
        entry["files"][(commit, path)] = (sha256, size)
        return commit

    def civitai_version(self, version: str, name: str, sha256: str, size_bytes: int) -> None:
        self.civitai.setdefault(version, []).append(
            {
                "name": name,
                "sizeKB": size_bytes / 1024,
                "hashes": {"SHA256": sha256.upper()},
                "primary": not self.civitai.get(version),
                "downloadUrl": f"https://civitai.com/api/download/models/{version}",
            }
        )

    def pack(self, pack_id: str, repository: str, versions: tuple[str, ...] = ()) -> None:
        self.packs[pack_id] = {"repository": repository, "versions": list(versions)}

    # --- answering -------------------------------------------------------------------------

    def answer(self, method: str, path: str, form: dict) -> tuple[int, object]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        service, rest = parts[0], parts[1:]
        if service == "hf" and rest[:2] == ["api", "models"] and len(rest) >= 6:
            repo = f"{rest[2]}/{rest[3]}"
            entry = self.hf.get(repo)
            if entry is None:
                return 404, {"error": "Repository not found"}
            if rest[4] == "revision" and method == "GET":
                # GET /api/models/{repo}/revision/{revision}: the model info, `sha` the commit
                commit = entry["refs"].get(rest[5]) or (
                    rest[5] if rest[5] in entry["refs"].values() else None
                )
                if commit is None:
                    return 404, {"error": f"Invalid rev id: {rest[5]}"}
                return 200, {"id": repo, "sha": commit, "siblings": []}
            if rest[4] == "paths-info" and method == "POST":
                # POST /api/models/{repo}/paths-info/{revision} (form: paths): one entry per path
                out = []
                for p in form.get("paths", []):
                    found = entry["files"].get((rest[5], p))
                    if found:
                        sha, size = found
                        oid = hashlib.sha1(sha.encode()).hexdigest()
                        lfs = {"oid": sha, "size": size, "pointerSize": 134}
                        out.append(
                            {"type": "file", "oid": oid, "size": size, "path": p, "lfs": lfs}
                        )
                return 200, out
        if service == "civitai" and rest[:3] == ["api", "v1", "model-versions"] and len(rest) == 4:
            files = self.civitai.get(rest[3])
            if files is None:
                return 404, {"error": "No model version with id " + rest[3]}
            return 200, {"id": int(rest[3]), "files": files}
        if service == "registry" and rest[:1] == ["nodes"] and len(rest) >= 2:
            pack = self.packs.get(rest[1])
            if pack is None:
                return 404, {"message": "Node not found"}
            if len(rest) == 2:
                return 200, {"id": rest[1], "name": rest[1], "repository": pack["repository"]}
            if len(rest) == 4 and rest[2] == "versions" and rest[3] in pack["versions"]:
                return 200, {
                    "id": commit_of(rest[3]),
                    "version": rest[3],
                    "downloadUrl": f"https://cdn.comfy.org/{rest[1]}/{rest[3]}/node.zip",
                }
            return 404, {"message": "Node version not found"}
        return 404, {"error": "not found"}


def _handler(server: LookupServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _serve(self, method: str, form: dict) -> None:
            path = urlsplit(self.path).path
            with server._lock:
                server.requests.append(f"{method} {path}")
                server.in_flight += 1
                server.most_at_once = max(server.most_at_once, server.in_flight)
            try:
                self._answer(method, path, form)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _answer(self, method: str, path: str, form: dict) -> None:
            if server.delay_s:
                time.sleep(server.delay_s)
            fault = next(
                (v for k, v in server.faults.items() if path.startswith(k)),
                None,
            )
            if fault == "slow":
                time.sleep(server.slow_s)
            if isinstance(fault, int):
                status, body = fault, {"error": "fault"}
            else:
                status, body = server.answer(method, path, form)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (a timeout test)

        def do_GET(self):  # noqa: N802
            self._serve("GET", {})

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._serve("POST", parse_qs(body.decode()))

    return Handler
