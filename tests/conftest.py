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

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
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
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from taide.chat.formats import LLAMA3_TEMPLATE

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=LLAMA3_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                  pad_token="<|end_of_text|>")
    tok.chat_template = LLAMA3_TEMPLATE
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context_length,
                         bos_token_id=tok.convert_tokens_to_ids("<|begin_of_text|>"),
                         eos_token_id=[tok.convert_tokens_to_ids("<|eot_id|>"), tok.convert_tokens_to_ids("<|end_of_text|>")])
    LlamaForCausalLM(config).save_pretrained(path)
    return path


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
