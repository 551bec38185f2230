"""`taide serve` over real HTTP: the official openai client, raw requests for the error paths, auth,
429, context overflow, cancel-on-disconnect, the TAIDE system prompt, metrics and gateway mode."""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest
from conftest import LiveServer, wait_for

from taide.chat.presets import TAIDE_SYSTEM_PROMPT
from taide.engines import load_engine
from taide.serve import ServeConfig, create_app

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]




@pytest.fixture(scope="module")
def smol_server(smol_llamacpp):
    with LiveServer(create_app(smol_llamacpp, ServeConfig(api_key="sk-test"))) as server:
        yield server


@pytest.fixture(scope="module")
def client(smol_server):
    return openai.OpenAI(base_url=smol_server.url + "/v1", api_key="sk-test")


def test_openai_client_plain_and_streamed(client, smol_llamacpp):
    models = client.models.list().data
    assert [m.id for m in models] == ["smollm2-135m"]
    reply = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=32)
    local = smol_llamacpp.chat(QUESTION, __import__("taide").GenerationParams(max_tokens=32, temperature=0))
    assert reply.choices[0].message.content == local.text and "Paris" in local.text
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (local.prompt_tokens, local.completion_tokens)
    stream = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=32,
                                            stream=True, stream_options={"include_usage": True})
    events = list(stream)
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text == local.text
    assert [e.choices[0].finish_reason for e in events if e.choices][-1] == "stop"
    assert events[-1].usage.completion_tokens == local.completion_tokens


def test_completions_route(client):
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    plain = client.completions.create(model="smollm2-135m", prompt=prompt, temperature=0, max_tokens=12)
    assert "Paris" in plain.choices[0].text and plain.usage.completion_tokens <= 12
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smollm2-135m", prompt=prompt, temperature=0, max_tokens=12, stream=True) if c.choices)
    assert streamed == plain.choices[0].text


def test_unknown_fields_are_ignored(smol_server):
    body = {"messages": QUESTION, "max_tokens": 4, "temperature": 0, "presence_penalty": 0.3, "user": "u1",
            "response_format": {"type": "text"}, "something_new": [1, 2]}
    r = httpx.post(smol_server.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-test"})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize("body, status, param, words", [
    (b'{"messages": [{"role": "user", "content": "hi"}', 400, None, "not valid JSON"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role", "'system', 'user' or 'assistant'"),
    ({"messages": []}, 400, "messages", "at least 1"),
    ({"messages": QUESTION, "temperature": "hot"}, 400, "temperature", "valid number"),
    ({"messages": QUESTION, "n": 2}, 400, "n", "less than or equal to 1"),
    ({"messages": QUESTION, "model": "gpt-4o"}, 404, "model", "serves 'smollm2-135m'"),
    ({"messages": QUESTION, "logprobs": True}, 400, "logprobs", "not available"),
    ({"messages": QUESTION, "max_tokens": 9000}, 400, "messages", "9000"),
])
def test_bad_requests_get_openai_errors(smol_server, body, status, param, words):
    headers = {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}
    data = body if isinstance(body, bytes) else json.dumps(body)
    r = httpx.post(smol_server.url + "/v1/chat/completions", content=data, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"] and error["type"]


def test_context_overflow_gives_both_numbers(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "word " * 2500}],
                                       max_tokens=16)
    assert e.value.code == "context_length_exceeded"
    message = e.value.body["message"]
    assert "2048" in message and "tokens" in message


def test_api_key_required_everywhere_but_health(smol_server):
    for path in ("/v1/models", "/metrics", "/openapi.json", "/v1/presets"):
        assert httpx.get(smol_server.url + path).status_code == 401
        assert httpx.get(smol_server.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(smol_server.url + path, headers={"Authorization": "Bearer sk-test"}).status_code == 200
    r = httpx.post(smol_server.url + "/v1/chat/completions", json={"messages": QUESTION})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(smol_server.url + "/health").json() == {"status": "ok", "model": "smollm2-135m"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=smol_server.url + "/v1", api_key="nope").models.list()


def test_openapi_schema_lists_the_routes(smol_server):
    schema = httpx.get(smol_server.url + "/openapi.json", headers={"Authorization": "Bearer sk-test"}).json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models"} <= set(schema["paths"])


def test_metrics_are_prometheus_text(smol_server, client):
    client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=4)
    text = httpx.get(smol_server.url + "/metrics", headers={"Authorization": "Bearer sk-test"}).text
    assert 'taide_requests_total{route="/v1/chat/completions",status="200"}' in text
    for name in ("taide_request_latency_seconds_bucket", "taide_time_to_first_token_seconds_count",
                 "taide_completion_tokens_total", "taide_queue_depth", "taide_engine_steps"):
        assert name in text


def test_client_disconnect_cancels_generation(smol_server, smol_llamacpp):
    before = smol_llamacpp.stats()
    body = {"messages": [{"role": "user", "content": "Write a very long story about Taipei."}], "max_tokens": 1500,
            "temperature": 0.8, "seed": 3, "stream": True}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", smol_server.url + "/v1/chat/completions", json=body,
                         headers={"Authorization": "Bearer sk-test"}) as response:
            for i, _line in enumerate(response.iter_lines()):
                if i >= 6:
                    break  # leaving the block closes the connection mid-answer
    assert wait_for(lambda: smol_llamacpp.stats()["cancelled"] == before["cancelled"] + 1), smol_llamacpp.stats()
    assert wait_for(lambda: smol_llamacpp.stats()["active"] == 0)
    assert smol_llamacpp.stats()["tokens"] - before["tokens"] < 400


def test_full_queue_answers_429_with_retry_after(smol_llamacpp):
    config = ServeConfig(concurrency=1, max_waiting=0, retry_after=3)
    with LiveServer(create_app(smol_llamacpp, config)) as server:
        long = {"messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 400,
                "temperature": 0.8, "stream": True}
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", server.url + "/v1/chat/completions", json=long) as first:
                lines = first.iter_lines()  # kept: a dropped iterator would close the connection
                next(lines)  # the first request holds the only place
                second = http.post(server.url + "/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 4})
                assert second.status_code == 429 and second.headers["Retry-After"] == "3"
                assert second.json()["error"]["type"] == "rate_limit_error"
        # once the first has gone, there is room again
        assert wait_for(lambda: httpx.post(server.url + "/v1/chat/completions", timeout=60,
                                            json={"messages": QUESTION, "max_tokens": 4}).status_code == 200)


def test_health_is_503_while_loading(tiny_model_dir):
    release = threading.Event()

    def slow_load():  # the app owns what its loader returns, and closes it at shutdown
        release.wait(30)
        return load_engine(str(tiny_model_dir))

    app = create_app(slow_load)
    server = LiveServer(app)
    server.thread.start()
    try:
        assert wait_for(lambda: _status(server.url + "/health") == 503)
        assert _status(server.url + "/v1/models") == 503
        release.set()
        assert wait_for(lambda: _status(server.url + "/health") == 200)
    finally:
        server.__exit__()


def _status(url):
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_taide_system_prompt_for_taide_format_models(tiny_engine):
    with LiveServer(create_app(tiny_engine)) as server:
        model = httpx.get(server.url + "/v1/models").json()["data"][0]
        assert model["taide"]["chat_format"] == "llama3" and model["taide"]["system_prompt"] == TAIDE_SYSTEM_PROMPT
        user_only = [{"role": "user", "content": "你好"}]
        r = httpx.post(server.url + "/v1/chat/completions", json={"messages": user_only, "max_tokens": 2}).json()
        assert "usage" in r, r
        with_system = [{"role": "system", "content": TAIDE_SYSTEM_PROMPT}] + user_only
        assert r["usage"]["prompt_tokens"] == tiny_engine.count_tokens(with_system)
    with LiveServer(create_app(tiny_engine, ServeConfig(system_prompt=None))) as server:
        r = httpx.post(server.url + "/v1/chat/completions", json={"messages": user_only, "max_tokens": 2}).json()
        assert r["usage"]["prompt_tokens"] == tiny_engine.count_tokens(user_only)


def test_gateway_in_front_of_another_taide_serve(smol_server, smol_llamacpp):
    """`taide serve --upstream URL`: auth, limits and metrics here; the answer from the upstream (vLLM's role)."""
    upstream = load_engine(smol_server.url + "/v1", api_key="sk-test")
    with LiveServer(create_app(upstream, ServeConfig(api_key="gw-key"))) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="gw-key")
        assert [m.id for m in client.models.list().data] == ["smollm2-135m"]
        direct = openai.OpenAI(base_url=smol_server.url + "/v1", api_key="sk-test").chat.completions.create(
            model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=24)
        via = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=24)
        assert via.choices[0].message.content == direct.choices[0].message.content
        assert via.usage.prompt_tokens == direct.usage.prompt_tokens
        streamed = "".join(e.choices[0].delta.content or "" for e in client.chat.completions.create(
            model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=24, stream=True) if e.choices)
        assert streamed == direct.choices[0].message.content
        assert httpx.get(gateway.url + "/v1/models").status_code == 401
        with pytest.raises(openai.BadRequestError, match="2048"):  # the upstream's 400 comes through as a 400
            client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "word " * 2500}],
                                           max_tokens=16)
        # a client leaving the gateway mid-stream stops the upstream's generation too
        before = smol_llamacpp.stats()["cancelled"]
        body = {"messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 1500,
                "temperature": 0.8, "stream": True}
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": "Bearer gw-key"}, timeout=30) as response:
            for i, _ in enumerate(response.iter_lines()):
                if i >= 6:
                    break
        assert wait_for(lambda: smol_llamacpp.stats()["cancelled"] == before + 1, timeout=15)
    upstream.close()
