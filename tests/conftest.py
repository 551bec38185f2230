"""Fixtures: a tiny random-init Llama 3-format model built on the spot (no downloads), the embedded
default model, and ../shared when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
