"""Input images: decoded from base64 / data URIs, or downloaded from a URL.

Downloads are guarded against server-side request forgery: http(s) only, and
the address policy of handler.addresses (public addresses only, unless
BAKERY_URL_ALLOW lists them; the connection goes to the address that was
checked), each redirect hop checked the same way. Size and time are bounded:
the download ends by its deadline whatever the server sends.

`upload` stores them in ComfyUI's input folder under the job's own names
(`<job token>-<name>`, handler.jobs.cleanup): two jobs that send the same
file under the same name get a file each, so neither can lose it to the
other's clean-up, nor see the other's.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from handler import addresses, settings
from handler.jobs.errors import JobInputError
from handler.jobs.input import ImageInput

if TYPE_CHECKING:
    from handler.jobs.cleanup import JobFiles
    from handler.jobs.comfyui import ComfyClient

MAX_REDIRECTS = 5

_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,", re.I)


@dataclass
class LoadedImage:
    name: str
    data: bytes


def load(images: list[ImageInput], deadline: float | None = None) -> list[LoadedImage]:
    """Decode or download every input image, before anything reaches ComfyUI.

    `deadline` (time.monotonic()) is the job's: no download runs past it.
    """
    out = []
    for i, img in enumerate(images):
        if img.url is not None:
            data = from_url(img.url, img.where(i), deadline)
            out.append(LoadedImage(img.name, data))
        else:
            out.append(LoadedImage(img.name, decode(img.image or "", img.where(i))))
    return out


def upload(comfy: ComfyClient, loaded: list[LoadedImage], files: JobFiles) -> dict[str, str]:
    """Store each image in ComfyUI's input folder under the job's own name; return
    {name in the workflow: name stored} for rewriting the workflow.

    Each file is the job's (`files`) before its upload starts, so a failed or timed-out
    upload that ComfyUI stored anyway is removed with the job's other files."""
    renames = {}
    for img in loaded:
        own = files.own_name(img.name)
        files.add({"filename": own, "type": "input"})
        stored = comfy.upload_image(own, img.data, overwrite=True)
        entry = {**stored, "filename": stored.get("name", own), "type": "input"}
        if entry["filename"] != own or entry.get("subfolder"):
            files.add(entry)  # ComfyUI stored it elsewhere than asked: that one is ours too
        sub = entry.get("subfolder") or ""
        renames[img.name] = f"{sub}/{entry['filename']}" if sub else entry["filename"]
    return renames


def decode(text: str, field: str) -> bytes:
    """base64 (plain or as a data URI) → bytes, size-checked before decoding."""
    limit = settings.MAX_IMAGE_BYTES.get()
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


def from_url(url: str, field: str, deadline: float | None = None) -> bytes:
    """GET an input image from `url`: every hop's address checked, size and time bounded.

    `deadline` (time.monotonic()) is the job's own; the download ends by the earlier of
    it and BAKERY_URL_TIMEOUT_S, whatever the server does (a slow drip included).
    """
    limit = settings.MAX_IMAGE_BYTES.get()
    budget = settings.URL_TIMEOUT_S.get()
    ends = (
        time.monotonic() + budget if deadline is None else min(deadline, time.monotonic() + budget)
    )
    late = f"{field}: download took longer than {budget:g} s"
    for _hop in range(MAX_REDIRECTS + 1):
        host, port, address = check_url(url, field)
        if time.monotonic() >= ends:
            raise JobInputError(late)
        status, location, body = _get(url, host, port, address, ends, limit, field)
        if location is not None:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise JobInputError(f"{field}: {host} answered HTTP {status}")
        if not body:
            raise JobInputError(f"{field}: {host} sent an empty file")
        return body
    raise JobInputError(f"{field}: more than {MAX_REDIRECTS} redirects")


def _get(
    url: str, host: str, port: int, address: str, ends: float, limit: int, field: str
) -> tuple[int, str | None, bytes]:
    """One GET over a connection to `address` (the one checked), never to a fresh lookup.

    requests cannot be told which address to connect to, and a second DNS answer could
    point elsewhere (DNS rebinding), so this one request goes through http.client on a
    socket we opened ourselves. A timer shuts the socket at `ends`: a server that sends
    a byte every half second cannot stretch a read past the deadline.
    """
    parts = urlsplit(url)
    too_big = f"{field}: image is larger than {_mib(limit)} (BAKERY_MAX_IMAGE_BYTES)"
    failed = f"{field}: download from {host} failed"
    left = ends - time.monotonic()
    try:
        sock = socket.create_connection((address, port), timeout=min(left, 10))
    except OSError as err:
        raise JobInputError(f"{failed} ({_reason(err)})") from None
    watchdog = threading.Timer(max(left, 0), _shut, (sock,))
    watchdog.daemon = True
    watchdog.start()
    try:
        sock.settimeout(max(left, 0.001))
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port)
        else:
            conn = http.client.HTTPConnection(host, port)
        conn.sock = sock  # already connected, to the checked address
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(
            "GET",
            target,
            headers={"Host": parts.netloc, "Accept-Encoding": "identity", "User-Agent": "bakery"},
        )
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("location"):
            return resp.status, resp.getheader("location"), b""
        if resp.status != 200:
            return resp.status, None, b""
        size = resp.getheader("content-length", "")
        if size.isdigit() and int(size) > limit:
            raise JobInputError(too_big)
        body = bytearray()
        while chunk := resp.read1(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise JobInputError(too_big)
            if time.monotonic() >= ends:
                raise TimeoutError
        if time.monotonic() >= ends - 0.01:  # the watchdog ended the body, not the server
            raise TimeoutError
        return 200, None, bytes(body)
    except (OSError, http.client.HTTPException, ValueError) as err:
        # The watchdog's shutdown reads as a reset connection: it was the deadline.
        why = "timed out" if time.monotonic() >= ends - 0.01 else _reason(err)
        raise JobInputError(f"{failed} ({why})") from None
    finally:
        watchdog.cancel()
        sock.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def check_url(url: str, field: str) -> tuple[str, int, str]:
    """Refuse a URL whose scheme or any resolved address is not allowed.

    Returns its host, port and the checked address to connect to: the name is resolved
    once, here, and nothing else resolves it again.
    """
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
    except ValueError:
        raise JobInputError(f"{field}: the URL's port is not a number") from None
    try:
        return host, port, addresses.resolve(host, port)
    except addresses.AddressRefused as err:
        raise JobInputError(f"{field}: {err}") from None


def _reason(err: Exception) -> str:
    if isinstance(err, (TimeoutError, socket.timeout)) or "timed out" in str(err).lower():
        return "timed out"
    if isinstance(err, (ConnectionError, OSError)):
        return "connection failed"
    return type(err).__name__


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n} bytes"
