"""Input images: decoded from base64 / data URIs, or downloaded from a URL.

Downloads are guarded against server-side request forgery: http(s) only, the
host name is resolved and *every* address must be public (loopback, private,
link-local — cloud metadata lives there — CGNAT, multicast and reserved
ranges are refused unless BAKERY_URL_ALLOW lists them), each redirect hop is
checked the same way, and the address actually connected to is checked again
before the body is read (a DNS answer that changes between the check and the
connection cannot sneak through). Size and time are bounded.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from handler import http, settings
from handler.jobs.errors import JobInputError
from handler.jobs.input import MAX_IMAGE_BYTES, ImageInput

URL_ALLOW = settings.setting(
    "BAKERY_URL_ALLOW",
    "",
    "Comma-separated addresses or networks (e.g. `10.0.0.0/8`) that image `url`s may reach "
    "although they are not public; empty = public addresses only.",
)
URL_TIMEOUT = settings.setting(
    "BAKERY_URL_TIMEOUT_S",
    30.0,
    "Seconds an image download by `url` may take in all (connect, redirects and body).",
    kind="float",
)
MAX_REDIRECTS = 5

_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,", re.I)


@dataclass
class LoadedImage:
    name: str
    data: bytes


def load(images: list[ImageInput]) -> list[LoadedImage]:
    """Decode or download every input image, before anything reaches ComfyUI."""
    out = []
    for i, img in enumerate(images):
        if img.url is not None:
            out.append(LoadedImage(img.name, from_url(img.url, f"images[{i}].url")))
        else:
            out.append(LoadedImage(img.name, decode(img.image or "", f"images[{i}].image")))
    return out


def decode(text: str, field: str) -> bytes:
    """base64 (plain or as a data URI) → bytes, size-checked before decoding."""
    limit = MAX_IMAGE_BYTES.get()
    if text.startswith("data:"):
        match = _DATA_URI.match(text)
        if not match:
            raise JobInputError(
                f"{field}: a data URI must look like data:image/png;base64,<data> "
                "(only base64 data URIs are accepted)"
            )
        text = text[match.end() :]
    text = "".join(text.split())  # line breaks from `base64` tools are fine
    if len(text) * 3 // 4 > limit + 2:
        raise JobInputError(f"{field}: image is larger than {_mib(limit)} (BAKERY_MAX_IMAGE_BYTES)")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise JobInputError(f"{field}: is not valid base64") from None
    if not data:
        raise JobInputError(f"{field}: decodes to an empty file")
    if len(data) > limit:
        raise JobInputError(f"{field}: image is larger than {_mib(limit)} (BAKERY_MAX_IMAGE_BYTES)")
    return data


_session: requests.Session | None = None


def _http() -> requests.Session:
    global _session
    if _session is None:
        # Two tries at most: a download is on the job's clock. No proxies from the
        # environment: the address check must be about the address we connect to.
        _session = http.session(total=1, backoff_factor=0.2)
        _session.trust_env = False
    return _session


def from_url(url: str, field: str) -> bytes:
    """GET an input image from `url`: every hop's address checked, size and time bounded."""
    limit = MAX_IMAGE_BYTES.get()
    deadline = time.monotonic() + URL_TIMEOUT.get()
    for _hop in range(MAX_REDIRECTS + 1):
        host = check_url(url, field)
        left = deadline - time.monotonic()
        if left <= 0:
            raise JobInputError(f"{field}: download took longer than {URL_TIMEOUT.get():g} s")
        try:
            resp = _http().get(
                url, stream=True, allow_redirects=False, timeout=(min(left, 10), left)
            )
        except requests.RequestException as err:
            raise JobInputError(f"{field}: download from {host} failed ({_reason(err)})") from None
        with resp:
            _check_peer(resp, field)
            if resp.is_redirect and resp.headers.get("location"):
                url = urljoin(url, resp.headers["location"])
                continue
            if resp.status_code != 200:
                raise JobInputError(f"{field}: {host} answered HTTP {resp.status_code}")
            size = resp.headers.get("content-length", "")
            if size.isdigit() and int(size) > limit:
                raise JobInputError(
                    f"{field}: image is larger than {_mib(limit)} (BAKERY_MAX_IMAGE_BYTES)"
                )
            body = bytearray()
            try:
                for chunk in resp.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise JobInputError(
                            f"{field}: image is larger than {_mib(limit)} (BAKERY_MAX_IMAGE_BYTES)"
                        )
                    if time.monotonic() > deadline:
                        raise JobInputError(
                            f"{field}: download took longer than {URL_TIMEOUT.get():g} s"
                        )
            except requests.RequestException as err:
                raise JobInputError(
                    f"{field}: download from {host} failed ({_reason(err)})"
                ) from None
            if not body:
                raise JobInputError(f"{field}: {host} sent an empty file")
            return bytes(body)
    raise JobInputError(f"{field}: more than {MAX_REDIRECTS} redirects")


def check_url(url: str, field: str) -> str:
    """Refuse a URL whose scheme or any resolved address is not allowed; return its host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise JobInputError(f"{field}: only http and https URLs are accepted")
    host = parts.hostname
    if not host:
        raise JobInputError(f"{field}: the URL has no host")
    if parts.username or parts.password:
        raise JobInputError(f"{field}: URLs with credentials are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise JobInputError(f"{field}: cannot resolve host {host!r}") from None
    for info in infos:
        _check_address(info[4][0], host, field)
    return host


def _check_address(address: str, host: str, field: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return
    if any(ip in net for net in _allowed()):
        return
    shown = host if host == str(ip) else f"{host} ({ip})"
    raise JobInputError(
        f"{field}: {shown} is not a public address (loopback, private, link-local and metadata "
        "addresses are refused; BAKERY_URL_ALLOW can allow some)"
    )


def _allowed() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for item in URL_ALLOW.get().split(","):
        if item.strip():
            try:
                nets.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise settings.SettingError(
                    f"environment variable BAKERY_URL_ALLOW: {item.strip()!r} is not an address "
                    "or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None
    return nets


def _check_peer(resp: requests.Response, field: str) -> None:
    """Check the address the connection really went to (defeats DNS rebinding)."""
    sock = getattr(getattr(resp.raw, "connection", None), "sock", None)
    if sock is None:  # the server said "Connection: close": the socket hangs off the reader
        sock = getattr(getattr(getattr(resp.raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(sock, "_sock", None)
    try:
        peer = sock.getpeername()[0]
    except (AttributeError, OSError, TypeError, IndexError):
        return  # not exposed by this urllib3; the resolved addresses were checked
    _check_address(peer, urlsplit(resp.url).hostname or peer, field)


def _reason(err: Exception) -> str:
    if isinstance(err, requests.Timeout) or "timed out" in str(err).lower():
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        return "connection failed"
    return type(err).__name__


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n} bytes"
