"""The openai engine against a real third-party OpenAI-compatible server: llama.cpp's own
(llama-cpp-python's server) serving the embedded model on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from taide.engines import GenerationParams, load_engine
from taide.errors import EngineError

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llamacpp_server(embedded_gguf, tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w+")  # a pipe would fill up and block it
    # llama.cpp's own server, with the model opened as taide opens it (plain CPU buffers on AMX CPUs, where the
    # repacked ones crash llama-cpp-python 0.3.36)
    serve = ("import runpy, sys\nfrom taide.engines.llamacpp_engine import plain_cpu_buffers\n"
             "sys.argv[0] = 'llama_cpp.server'\nwith plain_cpu_buffers():\n"
             "    runpy.run_module('llama_cpp.server', run_name='__main__')\n")
    proc = subprocess.Popen([sys.executable, "-c", serve, "--model", str(embedded_gguf),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                             "--model_alias", "smollm2"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"llama.cpp server exited: {log.read()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/models", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama.cpp server did not start in 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_chat_stream_and_batch_through_an_endpoint(llamacpp_server, smol_llamacpp):
    with load_engine(llamacpp_server) as engine:
        assert engine.name == "openai" and engine.served_model == "smollm2"
        greedy = GenerationParams(max_tokens=24, temperature=0)
        answer = engine.chat(QUESTION, greedy)
        # Same weights, same template, greedy: the server answers what the local engine answers.
        assert answer.text == smol_llamacpp.chat(QUESTION, greedy).text
        assert answer.finish_reason == "stop" and answer.prompt_tokens > 10 and answer.completion_tokens > 3
        chunks = list(engine.stream(QUESTION, greedy))
        assert len(chunks) > 3 and "".join(c.text for c in chunks) == answer.text
        batch = engine.generate_batch([QUESTION, QUESTION], greedy)
        assert [b.text for b in batch] == [answer.text, answer.text]
        cut = engine.chat(QUESTION, GenerationParams(max_tokens=24, temperature=0, stop=["France"]))
        assert "France" not in cut.text and cut.text == answer.text[:answer.text.index("France")]


def test_unreachable_endpoint_names_the_url():
    port = _free_port()
    with pytest.raises(EngineError, match=f"cannot reach the endpoint http://127.0.0.1:{port}/v1"):
        load_engine(f"http://127.0.0.1:{port}/v1", api_key="x", timeout=2)
