"""The test suite's guard against traffic off this machine, in every Python process the tests start.

conftest.py puts this directory first on PYTHONPATH, so Python runs this file at startup in each process the
tests start (taide's CLI, torchrun's workers, Ray's processes, servers), and installs the same hook in pytest's
own process. An audit hook (:func:`sys.addaudithook`) sees every connect, datagram and name lookup made through
Python's ``socket`` module; one that names an address off this machine is refused at once (as on a machine
without a network: nothing waits on a timeout) and written, with the process and the calling lines, to the
file named by ``TAIDE_TEST_OFFSITE_LOG``. conftest.py fails the test during which a line was written.

On this machine: loopback addresses, the unspecified address, and the names ``localhost`` and this machine's
own host name. Lookups and connects done by native code (Ray's raylet, gloo) do not pass through here; the network
namespace that conftest.py runs the suite in (loopback only) covers them.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import sys
import traceback

LOG = "TAIDE_TEST_OFFSITE_LOG"
_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")
_SENDS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_HOSTNAME = socket.gethostname().lower()


def _offsite_host(host, lookup: bool) -> bool:
    """Whether reaching ``host`` leaves this machine. A name other than this machine's asks a name server; an
    address leaves unless it is loopback or unspecified (a bind) — except in a lookup, which asks nobody about an
    address (the connect that follows is checked)."""
    host = (host.decode() if isinstance(host, bytes) else str(host or "")).strip("[]").split("%")[0].lower()
    if host in ("", "localhost", _HOSTNAME) or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    address = getattr(address, "ipv4_mapped", None) or address
    return not (lookup or address.is_loopback or address.is_unspecified)


def offsite(event: str, args: tuple) -> str | None:
    """What ``event`` would reach off this machine, or None."""
    if event in _LOOKUPS:
        host = args[0]
    elif event in _SENDS:
        sock, address = args[0], args[1]
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return None  # a Unix socket, netlink, or a send on a connected socket (its connect was checked)
        host = address[0]
    else:
        return None
    return f"{event} {host!r}" if _offsite_host(host, event in _LOOKUPS) else None


def install(log: str) -> None:
    def guard(event, args):
        if not event.startswith("socket."):
            return
        what = offsite(event, args)
        if what is None:
            return
        entry = {"pid": os.getpid(), "argv": sys.argv[:3], "attempt": what,
                 "stack": traceback.format_stack(limit=8)[:-1]}
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        if event in _LOOKUPS:
            raise socket.gaierror(socket.EAI_NONAME, f"refused by the test suite's offsite guard: {what}")
        raise OSError(errno.ENETUNREACH, f"refused by the test suite's offsite guard: {what}")

    sys.addaudithook(guard)


if os.environ.get(LOG):
    install(os.environ[LOG])
