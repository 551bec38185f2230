"""`taide serve` over real HTTP: the official openai client, raw requests for the error paths, auth,
429, context overflow, cancel-on-disconnect, the TAIDE system prompt, metrics and gateway mode."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from conftest import LiveServer, wait_for

from taide.chat.presets import TAIDE_SYSTEM_PROMPT
from taide import GenerationParams
from taide.engines import load_engine
from taide.errors import TaideError
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
    ({"messages": QUESTION, "logprobs": True, "top_logprobs": 30}, 400, "top_logprobs", "less than or equal to 20"),
    ({"messages": QUESTION, "top_logprobs": 2}, 400, None, "needs logprobs"),
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
        for route, body in [("/v1/chat/completions", {"messages": QUESTION}), ("/v1/completions", {"prompt": "hi"}),
                            ("/tokenize", {"prompt": "hi"})]:  # every route that needs the model: 503, never 500
            r = httpx.post(server.url + route, json=body, timeout=5)
            assert (r.status_code, r.json()["error"]["code"]) == (503, "model_not_ready")
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
    with LiveServer(create_app(tiny_engine, ServeConfig(system_prompt="none"))) as server:
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
        scored = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=8,
                                                logprobs=True, top_logprobs=2)
        assert [t.token for t in scored.choices[0].logprobs.content] == \
            [t.token for t in _chat_logprobs(direct_client(smol_server), 8)]
        constrained = client.chat.completions.create(  # response_format reaches the upstream, which constrains
            model="smollm2-135m", messages=QUESTION, max_tokens=48, temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}})
        assert set(json.loads(constrained.choices[0].message.content)) == {"city", "night_market"}
        with pytest.raises(openai.BadRequestError, match="gateway"):  # echo's prompt scores stay upstream
            client.completions.create(model="smollm2-135m", prompt="Taipei", max_tokens=1, logprobs=1, echo=True)
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


CITY = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Taipei", "Tainan", "Hualien"]},
                                         "night_market": {"type": "boolean"}},
        "required": ["city", "night_market"], "additionalProperties": False}


def test_structured_output_parses_and_validates(client, smol_llamacpp, tiny_engine):
    """response_format json_schema constrains decoding with token masks made from the schema: the answer is JSON that
    matches it; a schema the masks cannot enforce is a 400. The request that aborted the server when llama.cpp's
    grammar sampler constrained it (a repetition penalty of 5e-324) is refused before any work; at the limit, JSON."""
    import jsonschema

    from taide.engines import GenerationParams
    from taide.errors import EngineError

    reply = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Which city has the Shilin night market?"}],
        max_tokens=48, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}})
    answer = json.loads(reply.choices[0].message.content)
    jsonschema.validate(answer, CITY)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Name a city in Taiwan."}], max_tokens=48,
        temperature=0.8, seed=3, stream=True, response_format={"type": "json_schema", "json_schema": {"schema": CITY}}))
    jsonschema.validate(json.loads(streamed), CITY)

    for penalty, status in ((5e-324, 400), (0.01, 200)):
        r = httpx.post(f"{str(client.base_url).rstrip('/')}/completions", headers={"Authorization": "Bearer sk-test"},
                       json={"prompt": "0", "max_tokens": 16, "repetition_penalty": penalty,
                             "response_format": {"type": "json_object"}})
        assert r.status_code == status, r.text
        assert "repetition_penalty" in r.text if status == 400 else r.json()["choices"][0]["text"].startswith("{")
    with pytest.raises(openai.BadRequestError, match="cannot constrain decoding"):
        client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], max_tokens=8,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"schema": {"not": {"type": "string"}}}})
    # the transformers engine constrains with token masks: even a random-weight model answers valid JSON
    flag = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
            "additionalProperties": False}
    answer = tiny_engine.chat([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=40, json_schema=flag))
    assert answer.finish_reason == "stop"
    jsonschema.validate(json.loads(answer.text), flag)
    with pytest.raises(EngineError, match="not"):
        tiny_engine.chat([{"role": "user", "content": "hi"}],
                         GenerationParams(max_tokens=4, json_schema={"not": {"type": "string"}}))


def direct_client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test")


def _chat_logprobs(client, max_tokens, **extra):
    reply = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0,
                                           max_tokens=max_tokens, logprobs=True, top_logprobs=2, **extra)
    return reply.choices[0].logprobs.content


def test_chat_logprobs_plain_and_streamed(client, smol_llamacpp):
    """OpenAI's choices[].logprobs.content: one entry per answer token, its text is the answer, greedy picks the top
    alternative, and the log-probabilities are the engine's own scores of that answer."""
    reply = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=16,
                                           logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token for t in content)
    assert all(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob for t in content)
    assert all(bytes(t.bytes).decode() == t.token for t in content)
    answer = reply.choices[0].message.content
    [scored] = smol_llamacpp.loglikelihood(QUESTION, [answer])
    assert sum(t.logprob for t in content) == pytest.approx(scored, abs=0.05)

    events = [e for e in client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0,
                                                        max_tokens=16, logprobs=True, top_logprobs=3, stream=True)
              if e.choices and e.choices[0].logprobs]
    streamed = [t for e in events for t in e.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=1e-4)
    plain = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=4)
    assert plain.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=4, top_logprobs=2)
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=4, logprobs=True,
                                       top_logprobs=21)


def test_completions_echo_scores_the_prompt(client, smol_llamacpp, smol_server):
    """echo + logprobs (what lm-evaluation-harness's local-completions asks): the prompt comes back first with each of
    its tokens scored (the first None), then the answer's token; text prompts and token-id prompts, several at once."""
    context, continuation = "The capital of Taiwan is", " Taipei"
    reply = client.completions.create(model="smollm2-135m", prompt=context + continuation, max_tokens=1, temperature=0,
                                      logprobs=1, echo=True)
    choice = reply.choices[0]
    lp = choice.logprobs
    assert choice.text.startswith(context + continuation)
    ids = httpx.post(smol_server.url + "/tokenize", json={"prompt": context + continuation, "add_special_tokens": False},
                     headers={"Authorization": "Bearer sk-test"}).json()["tokens"]
    assert len(lp.tokens) == len(ids) + 1 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert "".join(lp.tokens[:len(ids)]) == context + continuation
    assert lp.text_offset[:3] == [0, len(lp.tokens[0]), len(lp.tokens[0]) + len(lp.tokens[1])]
    n_context = len(smol_llamacpp.tokenize(context, False))
    [scored] = smol_llamacpp.loglikelihood(context, [continuation])
    assert sum(lp.token_logprobs[n_context:len(ids)]) == pytest.approx(scored, abs=0.05)
    assert all(top[token] == logprob for token, logprob, top in
               zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]))

    # token ids in, two prompts: one choice each, in order
    other = httpx.post(smol_server.url + "/tokenize", json={"prompt": "Hello"}, headers={"Authorization": "Bearer sk-test"})
    batch = client.completions.create(model="smollm2-135m", prompt=[ids, other.json()["tokens"]], max_tokens=1,
                                      temperature=0, logprobs=0, echo=True)
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.choices[0].logprobs.token_logprobs[1:len(ids)] == pytest.approx(lp.token_logprobs[1:len(ids)], abs=1e-3)
    assert batch.choices[1].text.startswith("Hello")
    streamed = [c for c in client.completions.create(model="smollm2-135m", prompt=context, max_tokens=3, temperature=0,
                                                     logprobs=2, echo=True, stream=True) if c.choices]
    assert "".join(c.choices[0].text for c in streamed).startswith(context)
    tokens = [t for c in streamed if c.choices[0].logprobs for t in c.choices[0].logprobs.token_logprobs]
    assert tokens[0] is None and len(tokens) == n_context + 3
    with pytest.raises(openai.BadRequestError, match="outside the vocabulary"):
        client.completions.create(model="smollm2-135m", prompt=[[1, 2, 10**7]], max_tokens=1)


def test_tokenizer_routes(smol_server, smol_llamacpp):
    """vLLM's /tokenize, /detokenize and /tokenizer_info, which lm-evaluation-harness's remote tokenizer uses."""
    auth = {"Authorization": "Bearer sk-test"}
    ids = httpx.post(smol_server.url + "/tokenize", json={"prompt": "臺北市 Taipei"}, headers=auth).json()
    assert ids["tokens"] == smol_llamacpp.tokenize("臺北市 Taipei") and ids["count"] == len(ids["tokens"])
    text = httpx.post(smol_server.url + "/detokenize", json={"tokens": ids["tokens"]}, headers=auth).json()["prompt"]
    assert text == "臺北市 Taipei"
    chat = httpx.post(smol_server.url + "/tokenize", json={"messages": QUESTION}, headers=auth).json()["tokens"]
    assert chat == smol_llamacpp.prompt_ids(QUESTION)
    info = httpx.get(smol_server.url + "/tokenizer_info", headers=auth).json()
    assert info["eos_token"] and info["model_max_length"] == 2048
    bad = httpx.post(smol_server.url + "/detokenize", json={"tokens": [10**8]}, headers=auth)
    assert bad.status_code == 400 and "vocabulary" in bad.json()["error"]["message"]
    assert httpx.post(smol_server.url + "/tokenize", json={}, headers=auth).status_code == 400


def test_an_engine_failing_mid_stream_ends_the_stream_with_an_error_event(tiny_model_dir):
    """The event loop reads a local engine's tokens without a thread in between: a decode step that raises after
    some tokens went out must still end the stream (an error event, then [DONE]), and the server keeps serving."""
    engine = load_engine(str(tiny_model_dir), "transformers")
    token_steps, calls = engine.token_steps, []

    def failing_token_steps(*args, **kwargs):
        calls.append(1)
        steps = token_steps(*args, **kwargs)
        for n, step in enumerate(steps):
            if n == 3 and len(calls) == 1:  # the first answer only
                steps.close()
                raise RuntimeError("the device went away")
            yield step

    engine.token_steps = failing_token_steps
    body = {"messages": QUESTION, "max_tokens": 20, "temperature": 0, "stream": True}
    try:
        with LiveServer(create_app(engine)) as server:
            with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data:")]
            assert response.status_code == 200 and lines[-1] == "data: [DONE]"
            events = [json.loads(line[5:]) for line in lines[:-1]]
            assert "the device went away" in events[-1]["error"]["message"]
            assert any(e.get("choices") for e in events[:-1])  # tokens before the failure reached the client
            after = httpx.post(server.url + "/v1/chat/completions", json={**body, "stream": False}, timeout=60)
            assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"]
    finally:
        engine.close()


def test_a_stream_interval_spaces_the_writes_and_keeps_every_token(tiny_engine):
    """With ``stream_interval`` the tokens decoded between two writes leave in one write, each still its own event,
    and the answer is the same as the engine's own; neither the first token nor the last waits for the interval."""
    writes = []  # (server time, body) of each non-empty write

    def recorded(app):
        async def record(scope, receive, send):
            async def sent(message):
                if message["type"] == "http.response.body" and message.get("body"):
                    writes.append((time.monotonic(), message["body"].decode()))
                await send(message)
            await app(scope, receive, sent)
        return record

    def token_writes(interval: float, max_tokens: int) -> list[tuple[float, str]]:
        writes.clear()
        body = {"messages": QUESTION, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        local = tiny_engine.chat(QUESTION, GenerationParams(max_tokens=max_tokens, temperature=0))
        config = ServeConfig(system_prompt="none", stream_interval=interval)
        with LiveServer(recorded(create_app(tiny_engine, config))) as server:
            with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as response:
                events = [json.loads(line[5:]) for line in response.iter_lines()
                          if line.startswith("data:") and line != "data: [DONE]"]
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == local.text
        assert events[-1]["usage"]["completion_tokens"] == local.completion_tokens == max_tokens
        return [(t, w) for t, w in writes if '"content"' in w and '"role"' not in w]

    spaced = token_writes(0.1, 60)
    gaps = [b[0] - a[0] for a, b in zip(spaced, spaced[1:])]
    assert all(gap >= 0.095 for gap in gaps[:-1]), gaps  # the last one ends when the answer does
    assert len(spaced) < 30 and max(w.count("data:") for _, w in spaced) > 1
    # an answer that takes far less than the interval: the first token, then the rest as soon as it is over
    whole = token_writes(1.0, 30)
    assert len(whole) <= 2 and whole[-1][0] - whole[0][0] < 1.0, [t for t, _ in whole]
    with pytest.raises(TaideError, match="between 0 and 1"):
        ServeConfig(stream_interval=5)
