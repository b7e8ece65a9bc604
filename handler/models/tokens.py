"""Which host receives which token, and URLs shown without their credentials.

An `auth: huggingface` model sends HF_TOKEN, an `auth: civitai` model sends
CIVITAI_TOKEN, as `Authorization: Bearer`, and only to the hosts named in
BAKERY_HF_HOSTS / BAKERY_CIVITAI_HOSTS over https (or to a loopback address).
Every redirect hop decides afresh (handler.models.source): Hugging Face and
Civitai redirect to CDNs, which never see the token.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from handler import settings

TOKENS = {
    "huggingface": (settings.HF_TOKEN, settings.HF_HOSTS),
    "civitai": (settings.CIVITAI_TOKEN, settings.CIVITAI_HOSTS),
}
SETTINGS = (settings.HF_HOSTS, settings.CIVITAI_HOSTS)


def public(url: str) -> str:
    """`url` without its query and fragment (signed CDN URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def auth_header(url: str, auth: str, env: dict | None = None) -> dict[str, str]:
    """The Authorization header `url` may receive for a model with `auth`, or none."""
    if auth not in TOKENS:
        return {}
    token_setting, hosts_setting = TOKENS[auth]
    token = token_setting.get(env)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    allowed = host in hosts_setting.get(env).lower().split()
    if token and allowed and (parts.scheme == "https" or _loopback(host)):
        return {"Authorization": f"Bearer {token}"}
    return {}
