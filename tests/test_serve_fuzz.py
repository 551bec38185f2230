"""`taide serve` under a schema-driven fuzzer: schemathesis generates requests for every operation of /openapi.json
(a fixed set, 25 or 40 per operation) and checks every answer: no server error, no status or content type the
schema does not document, error bodies in OpenAI's shape; on the transformers engine in the server's process and on
llama.cpp in a process of its own, as `taide serve` runs it, which must not have crashed either."""

from __future__ import annotations

import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from taide.serve.app import ServeConfig, create_app  # noqa: E402

# Schema-valid requests may still be refused with a 400 for what a schema cannot say (a system message after the
# first, a prompt longer than the context window): those are answers, not failures.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def isolated_llamacpp():
    """The embedded SmolLM2 on llama.cpp in its own process, as `taide serve` runs it: where schemathesis found a
    body (a tiny repetition penalty with a JSON grammar) that aborted llama.cpp and, before the engine had a process
    of its own, the server."""
    from taide.engines.process import ProcessEngine

    engine = ProcessEngine("smollm2-135m", "llamacpp", n_ctx=512)
    yield engine
    engine.close()


@pytest.mark.parametrize("which,examples", [("tiny_engine", 25), pytest.param("isolated_llamacpp", 40, marks=pytest.mark.slow)])
def test_no_server_error_and_nothing_undocumented(request, which, examples):
    engine = request.getfixturevalue(which)
    app = create_app(engine, ServeConfig(default_max_tokens=4))
    app.state.server.start_loading()  # what the lifespan does under uvicorn
    deadline = time.monotonic() + 30
    while app.state.server.engine is None and time.monotonic() < deadline:
        time.sleep(0.05)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models"}
    restarts = engine.stats().get("restarts", 0)
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same cases every run; random runs found the sampler overflows fixed
        def check(case):
            if isinstance(case.body, dict) and isinstance(case.body.get("max_tokens"), int):
                case.body["max_tokens"] = min(case.body["max_tokens"], 4)  # the tiny model's answers stay short
            case.call_and_validate(checks=CHECKS)

        check()
    assert engine.stats().get("restarts", 0) == restarts  # no case crashed the engine either


def test_requests_while_loading_get_503_and_an_empty_prompt_400(tiny_engine):
    from starlette.testclient import TestClient

    def never_ready():
        time.sleep(60)

    loading = TestClient(create_app(lambda: never_ready()))  # no lifespan here: the model never finishes loading
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", {"prompt": "hi"}), ("/v1/models", None)):
        response = loading.post(path, json=body) if body else loading.get(path)
        assert response.status_code == 503 and response.json()["error"]["code"] == "model_not_ready", path

    app = create_app(tiny_engine, ServeConfig(default_max_tokens=4))
    with TestClient(app) as client:
        for prompt in ("", [""], []):
            response = client.post("/v1/completions", json={"prompt": prompt})
            assert response.status_code == 400 and response.json()["error"]["param"].startswith("prompt"), prompt
        statuses = client.get("/openapi.json").json()["paths"]["/v1/chat/completions"]["post"]["responses"]
        assert set(statuses) == {"200", "400", "401", "404", "413", "429", "500", "502", "503"}
