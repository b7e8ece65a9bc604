"""Loaded by every Python process the production-loop tests start (PYTHONPATH): a socket
may connect to loopback only.

The runpod SDK's automatic fitness checks include a TCP connect to 8.8.8.8:53; the
tests switch them off (RUNPOD_SKIP_AUTO_SYSTEM_CHECKS), and this makes sure no
connection leaves the machine if a later SDK adds another: it is refused and
named on stderr, where the tests look for it.
"""

import ipaddress
import socket
import sys

MARK = "loopback-only: refused a connection to"
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _allowed(address) -> bool:
    if not isinstance(address, tuple):  # a Unix socket
        return True
    try:
        return ipaddress.ip_address(address[0]).is_loopback
    except ValueError:
        return address[0] == "localhost"


def _refuse(address):
    print(f"{MARK} {address!r}", file=sys.stderr, flush=True)
    return OSError(101, f"{MARK} {address!r} (tests stay on 127.0.0.1)")


def connect(self, address):
    if not _allowed(address):
        raise _refuse(address)
    return _connect(self, address)


def connect_ex(self, address):
    if not _allowed(address):
        _refuse(address)
        return 101
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
