"""The suite runs with the network off (conftest.py): a namespace with loopback only, and the offsite guard
that refuses and records what any Python process of the tests tries to reach past this machine."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from conftest import NETGUARD, NETWORK

ATTEMPTS = """
import socket, sys
listener = socket.create_server(("127.0.0.1", 0))
socket.create_connection(listener.getsockname(), timeout=5).close()   # loopback: allowed
socket.getaddrinfo("localhost", 80)                                    # allowed
for attempt in (lambda: socket.getaddrinfo("api.openai.com", 443),
                lambda: socket.create_connection(("192.0.2.1", 80), timeout=30),
                lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))):
    try:
        attempt()
        print("went through")
    except OSError as e:
        print(type(e).__name__, e.errno, e)
"""


def test_the_offsite_guard_refuses_and_records_what_leaves_the_machine(tmp_path):
    """In a Python process started by a test: a lookup, a connect and a datagram off the machine are refused at
    once (no waiting on the 30 s timeout) and written down; loopback is left alone."""
    log = tmp_path / "attempts.jsonl"
    env = {**os.environ, "TAIDE_TEST_OFFSITE_LOG": str(log)}  # its own log: this test's must stay empty
    done = subprocess.run([sys.executable, "-c", ATTEMPTS], capture_output=True, text=True, env=env, timeout=60)
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all("offsite guard" in line for line in lines), done.stdout + done.stderr
    assert lines[0].startswith("gaierror") and f" {errno.ENETUNREACH} " in lines[1]
    attempts = [json.loads(line)["attempt"] for line in log.read_text().splitlines()]
    assert attempts == ["socket.getaddrinfo 'api.openai.com'", "socket.connect '192.0.2.1'", "socket.sendto '8.8.8.8'"]
    assert str(NETGUARD) in os.environ["PYTHONPATH"].split(os.pathsep)  # what every process the tests start gets


def test_the_suite_runs_with_loopback_only():
    """pytest, and every process the tests start, sees loopback and nothing else: a connect off the machine fails at
    once with 'network unreachable' even where the offsite guard does not look (native code; here: the guard off)."""
    if not NETWORK["namespace"]:
        pytest.skip(f"no loopback-only namespace: {NETWORK['without']}; the suite ran with this machine's network "
                    "(the offsite guard still refused Python's attempts to leave it)")
    import socket

    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    probe = ("import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=30)\n"
             "except OSError as e:\n    print(e.errno, [n for _, n in socket.if_nameindex()])")
    env = {k: v for k, v in os.environ.items() if k != "TAIDE_TEST_OFFSITE_LOG"}  # the guard off
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=20)
    assert done.stdout.split(maxsplit=1) == [str(errno.ENETUNREACH), "['lo']\n"], done.stderr
