"""Which addresses a job's URLs may reach: public ones only, checked where the connection is made.

A job names URLs (input images, models) that this worker then fetches from inside
the endpoint's network, so a URL must not reach what only the worker can: loopback,
private, link-local (cloud metadata lives there), CGNAT, multicast, reserved ranges,
and IPv6 forms that wrap one of them (::ffff:, NAT64, 6to4, IPv4-compatible,
site-local, Teredo) are refused unless BAKERY_URL_ALLOW lists them.

The host name is resolved once, every address it resolves to is checked, and the
connection goes to the address that was checked: a DNS answer that changes between
the check and the connection (DNS rebinding) cannot sneak through. Callers check each
redirect hop the same way. Two ways in:
  - `resolve(host, port)` for a caller that opens its own socket (handler.jobs.images);
  - `guarded_session()`, a requests session whose every new connection is checked at
    connect time (the model download engine, handler.models.source).
"""

from __future__ import annotations

import ipaddress
import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection

from handler import settings


class AddressRefused(ValueError):
    """A URL's host is not a public address (or cannot be resolved); the message says which."""


# IPv6 ranges that carry an IPv4 address inside (checked as that address), and those
# that reach somewhere other than the public internet although ip.is_global says yes.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_NOT_PUBLIC_V6 = (
    ipaddress.ip_network("::/96"),  # IPv4-compatible ::a.b.c.d (deprecated)
    ipaddress.ip_network("fec0::/10"),  # site-local (deprecated, still routed inside sites)
    ipaddress.ip_network("2001::/32"),  # Teredo: a tunnel whose far end is a NAT
)


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A unicast address on the public internet, seen through IPv6 wrappers of IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return is_public(ip.ipv4_mapped)
        if any(ip in net for net in _NAT64):
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour:
            return is_public(ip.sixtofour)
        if any(ip in net for net in _NOT_PUBLIC_V6):
            return False
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> str:
    """Resolve `host` once and return the address to connect to; raise AddressRefused when
    it cannot be resolved or any address it resolves to is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise AddressRefused(f"cannot resolve host {short(host)!r}") from None
    for info in infos:
        check_address(info[4][0], host)
    return infos[0][4][0]


def check_address(address: str, host: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if is_public(ip):
        return
    if any(ip in net for net in allowed()):
        return
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
        if any(ip in net for net in allowed()):
            return
    host = short(host)
    shown = host if host == str(ip) else f"{host} ({ip})"
    raise AddressRefused(
        f"{shown} is not a public address (loopback, private, link-local and metadata "
        "addresses are refused; BAKERY_URL_ALLOW can allow some)"
    )


def short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def allowed() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for item in settings.URL_ALLOW.get().split(","):
        if item.strip():
            try:
                nets.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise settings.SettingError(
                    f"environment variable BAKERY_URL_ALLOW: {item.strip()!r} is not an address "
                    "or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None
    return nets


# --- requests, checked at connect time ------------------------------------------------------


class _Checked:
    """urllib3's connection, but the socket goes to the address `resolve` checked."""

    def _new_conn(self) -> socket.socket:
        address = resolve(self._dns_host, self.port)  # AddressRefused passes through urllib3
        try:
            return connection.create_connection(
                (address, self.port),
                self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except TimeoutError as e:
            raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from e
        except OSError as e:
            raise NewConnectionError(self, f"failed to connect: {e}") from e


class _CheckedHTTP(_Checked, HTTPConnection):
    pass


class _CheckedHTTPS(_Checked, HTTPSConnection):  # TLS still verifies the host name
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTP


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPS


class _CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPPool,
            "https": _CheckedHTTPSPool,
        }


def guarded_session(pool_maxsize: int = 16) -> requests.Session:
    """A session that connects only to allowed addresses (no retries, no proxies from the
    environment: a proxy would be the address connected, not the URL's host)."""
    s = requests.Session()
    s.trust_env = False
    adapter = _CheckedAdapter(max_retries=0, pool_maxsize=pool_maxsize)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s
