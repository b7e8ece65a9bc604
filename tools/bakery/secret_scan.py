"""Tokens written in variants.yaml: found, named, and never shown.

A token in the file would end up in git and in every image built from it; a
message about any value must not print one either (`shown`).
"""

from __future__ import annotations

import re

from bakery.errors import Problem
from bakery.marked_yaml import Marked
from handler import schema_errors
from handler.schema_errors import dotted

# What a token looks like, and what to call it in a message (never the value itself).
SECRETS = [
    (re.compile(r"hf_[A-Za-z0-9]{20,}"), "a Hugging Face token (hf_…)", "huggingface"),
    (
        re.compile(
            r"[?&](token|access_token|api_key|apikey|key|auth|password|secret|sig|signature)=[^&\s…]+",
            re.I,
        ),
        "a credential in the URL query (?token=…)",
        None,
    ),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a user name and password in the URL", None),
    (re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{32}(?![0-9a-fA-F])"), "a Civitai API key", "civitai"),
    (re.compile(r"(ghp|gho|ghs|ghu)_[A-Za-z0-9]{30,}|github_pat_\w{30,}"), "a GitHub token", None),
    (re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}"), "an AWS access key", None),
    # A presigned S3 (or S3-compatible) URL carries a signature and often a session token.
    (
        re.compile(r"[?&]X-Amz-(Security-Token|Signature|Credential)=", re.I),
        "a presigned URL (X-Amz-Signature=…), which is a credential until it expires",
        None,
    ),
    (re.compile(r"[?&](Signature|AWSAccessKeyId)=[^&\s]+", re.I), "a signed URL", None),
    (re.compile(r"glpat-[A-Za-z0-9_-]{20,}"), "a GitLab token (glpat-…)", None),
    (re.compile(r"xox[abpors]-[A-Za-z0-9-]{10,}"), "a Slack token", None),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "an API key (sk-…)", None),
    (re.compile(r"\bBearer\s+\S{10,}", re.I), "a bearer token", None),
]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SECRET_SHOWN = "(a value that looks like a secret, not shown)"
LONGEST_WORD = 80  # characters of one word a message repeats


def looks_secret(text: str) -> bool:
    return any(rx.search(text) for rx, _, _ in SECRETS)


def scrub(text: str) -> str:
    """`text` (a whole message, key path included) with every secret and every long word cut.

    Keys and names reach messages through the key path and through wording such as
    "unknown key '…'", so the message is cleaned as a whole, whatever put the value there.
    """
    for rx, _, _ in SECRETS:
        text = rx.sub("(secret, not shown)", text)
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)  # "\n", not a line break
    too_long = re.compile(rf"[^\s'.]{{{LONGEST_WORD + 1},}}")
    return too_long.sub(lambda m: m.group()[: LONGEST_WORD - 3] + "...", text)


def shown(value: object) -> str:
    """A value quoted for a message; never a secret, never a wall of text."""
    if looks_secret(str(value)):
        return SECRET_SHOWN
    return schema_errors.shown(value)


def _texts(data: object, path: tuple = ()):
    """Every string written in the file: (path, text, where), mapping keys included."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key), str(key), "key"
            yield from _texts(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _texts(value, (*path, i))
    elif isinstance(data, str):
        yield path, data, "value"


def secret_problems(marked: Marked) -> list[Problem]:
    """Tokens written anywhere in the file: they would end up in git and in images."""
    out: list[Problem] = []
    for path, text, kind in _texts(marked.data):
        # sha256 values and commit pins are long hex on purpose.
        if kind == "value" and path and path[-1] in ("sha256", "commit"):
            continue
        found = next(((what, auth) for rx, what, auth in SECRETS if rx.search(text)), None)
        if not found:
            continue
        what, auth = found
        fix = "remove it (and revoke it if it was ever committed)"
        if auth:
            variable = "HF_TOKEN" if auth == "huggingface" else "CIVITAI_TOKEN"
            fix += f"; set `auth: {auth}` on the model and give the container {variable}"
        else:
            fix += "; tokens reach a build only as bake secrets and a container only as environment"
        where = marked.key_at(path) if kind == "key" else marked.at(path)
        out.append(Problem(*where, dotted(path), f"this looks like {what}", fix))
    return out
