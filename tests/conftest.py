"""Fixtures: a tiny random-init Llama 3-format model built on the spot (no downloads), the embedded
default model, a stub judge server, and ../shared when it is present.

The suite runs with the network off, and fails a test that tries to reach past this machine:

- **a network namespace with loopback only**: pytest moves itself into one before the first test (as root, where
  unshare(2) is allowed; its header says which), so every thread and process a test starts — servers, taide's CLI,
  torchrun, Ray, native code included — has 127.0.0.1 and nothing else, and an attempt to go further fails at
  once instead of waiting on a timeout. ``TAIDE_TEST_NETWORK=host`` keeps this machine's network (to compare);
- **the offsite guard** (netguard/sitecustomize.py), in pytest and in every Python process the tests start:
  it refuses and records any connect or name lookup off this machine, and the test it happened in fails.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NETGUARD = Path(__file__).resolve().parent / "netguard"
SHARED = REPO.parent / "shared"
LLAMA3_VOCAB = SHARED / "vocab" / "llama3"
needs_shared = pytest.mark.skipif(not (LLAMA3_VOCAB / "ggml-vocab-llama-bpe.gguf").is_file(),
                                  reason="../shared/vocab/llama3 is absent (it ships only with the project checkout)")

CORPUS = [
    "中華民國憲法第一條：中華民國基於三民主義，為民有、民治、民享之民主共和國。",
    "臺灣的夜市小吃很有名，例如滷肉飯、蚵仔煎和珍珠奶茶。",
    "The Legislative Yuan passed the amendment on Tuesday after a long debate.",
    "請把下面的英文翻譯成繁體中文。Please translate the following text into English.",
    "你好，世界！Hello, world! 1234567890 🙂 emoji and symbols: <>|{}[]()@#$%^&*",
    "system user assistant \n\n\n  spaces   and\ttabs",
]


def build_tiny_llama3(path: Path, context_length: int = 256, seed: int = 0) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained here and Llama 3's control tokens and template."""
    from taide.models.tiny import tiny_model

    return tiny_model("llama3", path, CORPUS * 4, vocab_size=400, hidden=64, context_length=context_length, seed=seed,
                      intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_llama3(tmp_path_factory.mktemp("tiny-llama3"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from taide.engines import load_engine

    engine = load_engine(str(tiny_model_dir), "transformers")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    from taide.models import embedded_gguf_path

    return embedded_gguf_path("smollm2-135m")


@pytest.fixture(scope="session")
def smol_llamacpp():
    from taide.engines import load_engine

    engine = load_engine("smollm2-135m", "llamacpp", n_ctx=2048)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def smol_transformers():
    from taide.engines import load_engine

    engine = load_engine("smollm2-135m", "transformers")
    yield engine
    engine.close()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server on a loopback port, in a thread of the test process."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        import time
        import urllib.error
        import urllib.request

        self.thread.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return self
            except urllib.error.HTTPError:  # 503 while the model loads
                time.sleep(0.1)
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server at {self.url} did not become healthy")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


class StubJudge:
    """An OpenAI-compatible server (GET /v1/models, POST /v1/chat/completions) in a thread.

    A request is matched to a plan by a marker found in its messages (``plan("ANS-3", "429", "ok:6")``);
    each request takes the plan's next action: ``ok:N`` (a reasoned reply ending 評分：N), ``429``,
    ``500``, ``400``, ``401``, ``hang`` (sleep past the client's timeout, then answer) or ``garbage`` (no
    score). A spent plan keeps its last action; unplanned requests get ``ok:N`` with N from 7. ``requests`` lists
    every request's method and path."""

    def __init__(self, default_score: int = 7, hang_s: float = 1.5):
        self.plans: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.hits: Counter = Counter()
        self.bodies: list[dict] = []
        self.default_score, self.hang_s = default_score, hang_s
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout)
                    pass

            def do_GET(self):
                stub.requests.append(("GET", self.path))
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": "stub-judge", "object": "model", "created": 0, "owned_by": "tests"}]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "not_found"}})

            def do_POST(self):
                from taide.eval.judge import SCORE_LINE

                stub.requests.append(("POST", self.path))
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                action = stub.next_action(body)
                error = {"429": (429, "rate limited"), "500": (500, "upstream exploded"), "400": (400, "bad request"),
                         "401": (401, "invalid api key")}
                if action in error:
                    status, message = error[action]
                    self._send(status, {"error": {"message": message, "type": "stub", "code": status}},
                               {"Retry-After": "0"} if status == 429 else None)
                    return
                if action == "hang":
                    time.sleep(stub.hang_s)
                    action = f"ok:{stub.default_score}"
                text = ("這個回答看起來還可以，但我無法決定。" if action == "garbage"
                        else f"理由：大致正確，細節略有不足。\n{SCORE_LINE}{action.split(':')[1]}")
                self._send(200, {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0,
                                 "model": body.get("model", "stub-judge"),
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def plan(self, marker: str, *actions: str) -> None:
        self.plans[marker] = list(actions)

    def next_action(self, body: dict) -> str:
        text = "\n".join(str(m.get("content")) for m in body.get("messages", []))
        with self.lock:
            self.bodies.append(body)
            for marker, actions in self.plans.items():
                if marker in text:
                    self.hits[marker] += 1
                    return actions.pop(0) if len(actions) > 1 else actions[0]
            self.hits[None] += 1
            return f"ok:{self.default_score}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# ---- the network off: a loopback-only namespace and the offsite guard (see the module docstring) ------------------

CLONE_NEWNET, SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x40000000, 0x8913, 0x8914, 0x1
NETWORK = {"namespace": None, "without": None, "log": None}  # without: why the suite keeps this machine's network


def _enter_loopback_only_namespace() -> str | None:
    """Move pytest's thread, which starts every test's threads and processes, into a new network namespace and
    bring its loopback interface up. Returns why it could not (and leaves the network as it was), or None."""
    import ctypes
    import fcntl
    import socket
    import struct
    import sys

    if os.environ.get("TAIDE_TEST_NETWORK") == "host":
        return "TAIDE_TEST_NETWORK=host"
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux's ({sys.platform})"
    libc = ctypes.CDLL(None, use_errno=True)
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            return f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())} (it needs root)"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
        except OSError as e:
            libc.setns(here, CLONE_NEWNET)  # no loopback would fail every server test: back to the network
            return f"cannot bring up loopback in a new namespace: {e}"
    finally:
        os.close(here)
    return None


def pytest_configure(config):
    import importlib.util
    import tempfile

    why = _enter_loopback_only_namespace()
    NETWORK.update(namespace=why is None, without=why)
    handle, log = tempfile.mkstemp(prefix="taide-offsite-", suffix=".jsonl")
    os.close(handle)
    spec = importlib.util.spec_from_file_location("netguard", NETGUARD / "sitecustomize.py")
    guard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(guard)
    os.environ[guard.LOG] = log
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
    guard.install(log)
    NETWORK["log"] = Path(log)


def pytest_unconfigure(config):
    if NETWORK.get("log"):
        NETWORK["log"].unlink(missing_ok=True)


def pytest_report_header(config):
    if NETWORK["namespace"]:
        return "network: a namespace of the suite's own with loopback only; offsite guard on"
    return f"network: this machine's ({NETWORK['without']}); offsite guard on"


class Offsite:
    """The attempts to reach past this machine that the offsite guard refused during one test."""

    def __init__(self, log: Path):
        self.log, self.start = log, log.stat().st_size

    def attempts(self) -> list[dict]:
        with self.log.open("rb") as f:
            f.seek(self.start)
            return [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def offsite():
    """Fails the test when anything it ran tried to reach past this machine; ``offsite.attempts()`` lists them."""
    watch = Offsite(NETWORK["log"])
    yield watch
    attempts = watch.attempts()
    if attempts:
        pytest.fail("tried to reach past this machine (refused by tests/netguard):\n" + "\n".join(
            f"{a['attempt']} in pid {a['pid']} {' '.join(a['argv'])}\n{''.join(a['stack'][-4:])}" for a in attempts))
