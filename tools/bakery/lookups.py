"""What `bakery add` asks the outside world: a model file's sha256 and size, a node pack's
pinned source. Each answer is a Found or a Missing (why, and how to finish by hand).

- Hugging Face (`resolve` URLs): GET /api/models/{repo}/revision/{revision} resolves a
  branch to its commit (`sha`); POST /api/models/{repo}/paths-info/{commit} (form field
  `paths`) gives the file's `lfs.oid` (its sha256) and `lfs.size`. The URL is pinned to
  the commit.
- Civitai (`/api/download/models/{versionId}`): GET /api/v1/model-versions/{id} gives
  `files[]` with `name`, `sizeKB`, `hashes.SHA256`, `primary`.
- Comfy Registry: GET /nodes/{id} gives the pack's `repository`; a release version
  (GET /nodes/{id}/versions/{version}) is pinned to the repository's tag of that name.

The services are the defaults; BAKERY_HF_ENDPOINT, BAKERY_CIVITAI_ENDPOINT and
BAKERY_REGISTRY_ENDPOINT point elsewhere (tests, mirrors). docs/workflows.md cites the
services' documentation for every endpoint and field used here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from bakery import sources
from handler import http
from handler.huggingface import HF_HOSTS, hf_file

HF_ENDPOINT = "BAKERY_HF_ENDPOINT"
CIVITAI_ENDPOINT = "BAKERY_CIVITAI_ENDPOINT"
REGISTRY_ENDPOINT = "BAKERY_REGISTRY_ENDPOINT"
TIMEOUT_ENV = "BAKERY_LOOKUP_TIMEOUT_S"
DEFAULTS = {
    HF_ENDPOINT: "https://huggingface.co",
    CIVITAI_ENDPOINT: "https://civitai.com",
    REGISTRY_ENDPOINT: "https://api.comfy.org",
}
CIVITAI_HOSTS = ("civitai.com", "www.civitai.com")
COMMIT = re.compile(r"\A[0-9a-f]{40}\Z")
SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class File:
    """A model file as looked up: the (pinned) URL, sha256 and size."""

    url: str
    sha256: str | None
    size: int | None
    said: str  # where the values came from, for the summary line


@dataclass(frozen=True)
class Pack:
    source: str
    commit: str
    version: str | None
    said: str


@dataclass(frozen=True)
class Missing:
    """Could not be resolved: why, and how to finish by hand."""

    why: str
    fix: str


def endpoint(name: str) -> str:
    return (os.environ.get(name) or DEFAULTS[name]).rstrip("/")


def timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV) or 20)


class Lookups:
    """One HTTP session for every lookup of one `bakery add` (threads share it)."""

    def __init__(self):
        # One retry for a dropped connection or a 5xx: a lookup that keeps failing is
        # reported, never waited out.
        self.http = http.session(total=1, backoff_factor=0.1)

    def _get(self, url: str, token_env: str | None = None, **kw) -> requests.Response:
        headers = {"Accept": "application/json", "User-Agent": "comfy-bakery"}
        token = os.environ.get(token_env) if token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        method = "POST" if "data" in kw else "GET"
        return self.http.request(method, url, headers=headers, timeout=timeout(), **kw)

    def _json(self, what: str, url: str, token_env: str | None = None, **kw) -> object | Missing:
        try:
            resp = self._get(url, token_env, **kw)
        except requests.RequestException as exc:
            # A read timeout after the retry comes back wrapped in a ConnectionError.
            if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
                return Missing(f"{what}: no answer within {timeout():g} s", _RETRY)
            return Missing(f"{what}: {type(exc).__name__}", _RETRY)
        if resp.status_code in (401, 403):
            need = f" (set {token_env})" if token_env else ""
            return Missing(f"{what}: HTTP {resp.status_code}, not allowed{need}", _BY_HAND)
        if resp.status_code == 404:
            return Missing(f"{what}: HTTP 404, not found", _BY_HAND)
        if resp.status_code != 200:
            return Missing(f"{what}: HTTP {resp.status_code}", _RETRY)
        try:
            return resp.json()
        except ValueError:
            return Missing(f"{what}: the answer is not JSON", _RETRY)

    # --- model files ----------------------------------------------------------------------

    def model(self, url: str, name: str) -> File | Missing:
        hf = hf_file(url, HF_HOSTS)
        if hf is not None:
            return self._hf(url, hf)
        if _civitai_version(url) is not None:
            return self._civitai(url, name)
        host = urlsplit(url).hostname
        return Missing(
            f"{host} publishes no sha256 bakery can read",
            "write its sha256 and size by hand (sha256sum FILE; stat -c %s FILE), or null",
        )

    def _hf(self, url: str, hf) -> File | Missing:
        api = f"{endpoint(HF_ENDPOINT)}/api/models/{hf.repo}"
        commit = hf.revision
        if not COMMIT.match(commit):
            found = self._json(
                f"Hugging Face {hf.repo}@{hf.revision}",
                f"{api}/revision/{quote(hf.revision, safe='')}",
                "HF_TOKEN",
            )
            if isinstance(found, Missing):
                return found
            commit = found.get("sha") if isinstance(found, dict) else None
            if not isinstance(commit, str) or not COMMIT.match(commit):
                return Missing(f"Hugging Face {hf.repo}@{hf.revision}: no commit (sha)", _RETRY)
        info = self._json(
            f"Hugging Face {hf.repo}/{hf.path}",
            f"{api}/paths-info/{commit}",
            "HF_TOKEN",
            data={"paths": hf.path},
        )
        if isinstance(info, Missing):
            return info
        entry = (
            next(
                (e for e in info if isinstance(e, dict) and e.get("path") == hf.path),
                None,
            )
            if isinstance(info, list)
            else None
        )
        if entry is None:
            return Missing(f"Hugging Face {hf.repo}@{commit[:12]}: no file {hf.path}", _BY_HAND)
        lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else None
        if not lfs or not SHA256.match(str(lfs.get("oid", ""))):
            return Missing(
                f"Hugging Face {hf.repo}/{hf.path} is not an LFS file (no sha256 published)",
                "write its sha256 and size by hand",
            )
        parts = urlsplit(url)
        path = parts.path.replace(f"/resolve/{quote(hf.revision)}/", f"/resolve/{commit}/", 1)
        path = path.replace(f"/resolve/{hf.revision}/", f"/resolve/{commit}/", 1)
        pinned = urlunsplit(parts._replace(path=path))
        return File(pinned, lfs["oid"], int(lfs["size"]), f"Hugging Face at {commit[:12]}")

    def _civitai(self, url: str, name: str) -> File | Missing:
        version = _civitai_version(url)
        found = self._json(
            f"Civitai model version {version}",
            f"{endpoint(CIVITAI_ENDPOINT)}/api/v1/model-versions/{version}",
            "CIVITAI_TOKEN",
        )
        if isinstance(found, Missing):
            return found
        files = [f for f in (found.get("files") or []) if isinstance(f, dict)]
        pick = (
            next((f for f in files if f.get("name") == name), None)
            or next((f for f in files if f.get("primary")), None)
            or (files[0] if len(files) == 1 else None)
        )
        sha = str(((pick or {}).get("hashes") or {}).get("SHA256", "")).lower()
        if pick is None or not SHA256.match(sha):
            return Missing(f"Civitai model version {version}: no file with a SHA256", _BY_HAND)
        size_kb = pick.get("sizeKB")
        size = round(float(size_kb) * 1024) if isinstance(size_kb, (int, float)) else None
        return File(url, sha, size, f"Civitai version {version}")

    # --- node packs -----------------------------------------------------------------------

    def registry_pack(self, pack: str, ver: str | None) -> Pack | Missing:
        registry = endpoint(REGISTRY_ENDPOINT)
        node = self._json(f"Comfy Registry pack {pack}", f"{registry}/nodes/{quote(pack)}")
        if isinstance(node, Missing):
            return node
        repo = node.get("repository") if isinstance(node, dict) else None
        if not isinstance(repo, str) or not repo:
            return Missing(f"Comfy Registry pack {pack}: no repository", _BY_HAND)
        source = git_source(repo)
        if isinstance(source, Missing):
            return source
        if ver and COMMIT.match(ver):
            return Pack(source, ver, None, f"Comfy Registry {pack} → {source}")
        if not ver:
            return Missing(f"pack {pack}: the workflow records no version", _PIN)
        found = self._json(
            f"Comfy Registry {pack}@{ver}", f"{registry}/nodes/{quote(pack)}/versions/{quote(ver)}"
        )
        if isinstance(found, Missing):
            return found
        commit = tag_commit(source, ver)
        if isinstance(commit, Missing):
            return commit
        return Pack(source, commit, ver, f"Comfy Registry {pack}@{ver} → {source} tag")

    @staticmethod
    def github_pack(repo: str, ver: str | None) -> Pack | Missing:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
            return Missing(f"aux_id {repo!r} is not a GitHub owner/repo", _PIN)
        if not ver or not COMMIT.match(ver):
            return Missing(f"GitHub {repo}: the workflow records no commit ({ver})", _PIN)
        return Pack(f"https://github.com/{repo}.git", ver, None, f"GitHub {repo}")


_RETRY = "try again later, or run with --offline and fill in sha256/size by hand"
_BY_HAND = "check the URL, or give another with --model FILE=URL"
_PIN = "add the pack to a node set by hand (README: Add a node set)"


def _civitai_version(url: str) -> str | None:
    parts = urlsplit(url)
    if (parts.hostname or "").lower() not in CIVITAI_HOSTS:
        return None
    found = re.fullmatch(r"/api/download/models/([0-9]+)/?", parts.path)
    return found[1] if found else None


def git_source(repo: str) -> str | Missing:
    """A pack's repository as an https git URL (`.git` added), or why it cannot be one."""
    parts = urlsplit(repo.strip())
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        return Missing(
            f"the pack's source {repo!r} is not an https git URL",
            "add the pack by hand with its https repository URL (README: Add a node set)",
        )
    path = parts.path.rstrip("/")
    return f"https://{parts.hostname}{path if path.endswith('.git') else path + '.git'}"


def tag_commit(source: str, tag: str) -> str | Missing:
    """The commit a repository's release tag (`1.2.3` or `v1.2.3`) points at (git ls-remote)."""
    try:
        url = sources.fetch_url(source)
    except sources.SourcesError as exc:
        return Missing(str(exc), _PIN)
    refs = [f"refs/tags/{t}" for t in (tag, f"v{tag}")]
    done = sources.git(Path.cwd(), "ls-remote", url, *refs, *(f"{r}^{{}}" for r in refs))
    if done.returncode != 0:
        return Missing(f"{source}: git ls-remote failed ({sources.last_line(done.stderr)})", _RETRY)
    found = {}
    for line in done.stdout.splitlines():
        commit, ref = line.split("\t", 1)
        found[ref] = commit
    for ref in refs:
        commit = found.get(f"{ref}^{{}}") or found.get(ref)
        if commit:
            return commit
    return Missing(f"{source} has no tag {tag} or v{tag}", _PIN)
