"""A server no request can kill or stall: the engine runs in a supervised process of its own (engines/process.py),
every input is bounded before any work, and what the engines cannot honour is refused with a 400.

The engine is the real llama.cpp one on the embedded SmolLM2, in its own process as `taide serve` runs it; faults are
real signals (SIGABRT, as llama.cpp's aborts raise, and SIGKILL) and a decode step that never returns."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
from conftest import LiveServer, wait_for
from engine_faults import HANG_SEED

from taide.engines.process import ProcessEngine
from taide.serve.app import ServeConfig, create_app

QUESTION = [{"role": "user", "content": "Count from one to fifty in words."}]


@pytest.fixture(scope="module")
def served():
    """`taide serve smollm2-135m` as run_serve builds it, with a short hang timeout and an engine that can stall."""
    config = ServeConfig(default_max_tokens=64, engine_timeout=8.0)
    app = create_app(lambda: ProcessEngine("smollm2-135m", "llamacpp", hang_timeout=config.engine_timeout,
                                           factory="engine_faults:hanging", n_ctx=2048), config)
    with LiveServer(app) as server:
        server.engine = app.state.server.engine
        yield server


def _healthy(server) -> bool:
    try:
        return httpx.get(server.url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _events(response) -> list:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def _answers(server) -> str:
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 8,
                                                             "temperature": 0}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("sig", [signal.SIGABRT, signal.SIGKILL], ids=["abort", "kill"])
def test_an_engine_killed_mid_stream_costs_only_its_own_requests(served, sig):
    engine = served.engine
    pid, restarts = engine.pid, engine.restarts
    body = {"messages": QUESTION, "max_tokens": 400, "stream": True, "temperature": 0}
    with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        events, lines = [], response.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(line[6:])
            if len(events) == 4:
                os.kill(pid, sig)  # mid-answer, as a native abort or the OOM killer would
                break
        events += [line[6:] for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "server_error" and f"killed by signal {sig.name}" in error["message"]
    # the server answers at once: 503 with Retry-After while the engine reloads, then answers again
    r = httpx.post(served.url + "/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4}, timeout=10)
    assert r.status_code in (200, 503), r.text
    if r.status_code == 503:
        assert r.headers["retry-after"] and r.json()["error"]["code"] == "engine_restarting"
    assert wait_for(lambda: _healthy(served), timeout=60)
    assert _answers(served)
    assert engine.restarts == restarts + 1 and engine.pid != pid
    health = httpx.get(served.url + "/health").json()
    assert health["status"] == "ok" and f"killed by signal {sig.name}" in health["last_fault"]
    assert "taide_engine_restarts" in httpx.get(served.url + "/metrics").text


@pytest.mark.slow
def test_a_hung_decode_step_is_killed_and_the_engine_restarted(served):
    engine = served.engine
    started, pid = time.monotonic(), engine.pid
    r = httpx.post(served.url + "/v1/chat/completions", timeout=60,
                   json={"messages": QUESTION, "max_tokens": 8, "seed": HANG_SEED})
    assert r.status_code == 500 and r.json()["error"]["code"] == "engine_fault", r.text
    assert "made no progress for 8 s with requests waiting" in r.json()["error"]["message"]
    assert time.monotonic() - started < 30
    assert wait_for(lambda: _healthy(served), timeout=60)
    assert _answers(served) and engine.pid != pid


def test_the_request_that_crashed_llamacpp_is_refused_and_the_server_stays_up(served):
    """The body schemathesis found: a repetition penalty of 5e-324 with a JSON grammar aborted llama.cpp."""
    r = httpx.post(served.url + "/v1/completions", timeout=30, json={
        "prompt": "0", "max_tokens": 16, "repetition_penalty": 5e-324, "response_format": {"type": "json_object"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "repetition_penalty", r.text
    r = httpx.post(served.url + "/v1/completions", timeout=60, json={
        "prompt": "0", "max_tokens": 16, "repetition_penalty": 0.01, "response_format": {"type": "json_object"}})
    assert r.status_code in (200, 400), r.text
    assert _healthy(served) and _answers(served)


def test_every_input_is_bounded_before_any_work(served):
    models = httpx.get(served.url + "/v1/models").json()["data"][0]["taide"]
    limit = models["limits"]["body_bytes"]
    assert limit == 64 * 2048 + 65536 and models["default_max_tokens"] == 64
    assert models["limits"]["stop"] == 16 and models["limits"]["repetition_penalty"] == [0.01, 5.0]
    big = json.dumps({"prompt": "字" * ((5 << 20) // 3)}, ensure_ascii=False).encode()  # 5 MB
    started = time.monotonic()
    r = httpx.post(served.url + "/v1/completions", content=big, headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert time.monotonic() - started < 1.0  # refused from its length, not read and tokenized

    def chunked():  # no Content-Length: counted as it comes, refused once past the limit
        for _ in range(100):
            yield b" " * 65536

    r = httpx.post(served.url + "/v1/completions", content=chunked(), headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 413
    # just under the limit is read; a prompt that long is refused for the context window, naming the prompt
    r = httpx.post(served.url + "/v1/completions", json={"prompt": "word " * 4000, "max_tokens": 1}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
    assert "shorten the prompt" in r.json()["error"]["message"]
    deep = ('{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", '
            '"json_schema": {"schema": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}}}")
    r = httpx.post(served.url + "/v1/chat/completions", content=deep, timeout=30)
    assert r.status_code == 400, r.text
    for field, value in (("top_k", 10**7), ("seed", 2**64), ("min_p", 1.5), ("stop", ["x"] * 17),
                         ("temperature", -1)):
        r = httpx.post(served.url + "/v1/chat/completions", timeout=30,
                       json={"messages": QUESTION, "max_tokens": 2, field: value})
        assert r.status_code == 400 and r.json()["error"]["param"].startswith(field), (field, r.text)
    # an empty answer request without max_tokens stops at the server's default, not at the end of the context
    r = httpx.post(served.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": ""}],
                                                             "temperature": 1.5, "seed": 1}, timeout=120)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 64
