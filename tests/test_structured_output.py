"""Structured output on both local engines through one mask engine (llguidance): every schema an engine accepts
constrains every finished answer to JSON that validates against it, and every schema it cannot enforce is refused
before any work with an error naming what. The tiny random-weight model (as transformers, and exported to GGUF for
llama.cpp) samples nearly uniformly among the tokens the mask leaves: a fuzzer of the constraint itself."""

from __future__ import annotations

import json
import re

import pytest

from taide.engines import GenerationParams, load_engine
from taide.errors import EngineError

ASK = [{"role": "user", "content": "JSON, please."}]

# Bounded, so that even a random model's answers end within max_tokens.
SCHEMAS = {
    "any object": True,
    "enum and boolean": {"type": "object", "properties": {"city": {"enum": ["Taipei", "Tainan", "花蓮"]},
                                                          "open": {"type": "boolean"}},
                         "required": ["city", "open"], "additionalProperties": False},
    "integer range": {"type": "object", "properties": {"n": {"type": "integer", "minimum": -5, "maximum": 120}},
                      "required": ["n"], "additionalProperties": False},
    "number bounds": {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0,
                                                             "exclusiveMaximum": 1}},
                      "required": ["x"], "additionalProperties": False},
    "multipleOf": {"type": "object", "properties": {"k": {"type": "integer", "multipleOf": 7, "minimum": 0,
                                                          "maximum": 999}},
                   "required": ["k"], "additionalProperties": False},
    "string length and pattern": {
        "type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                                         "note": {"type": "string", "minLength": 2, "maxLength": 6}},
        "required": ["code", "note"], "additionalProperties": False},
    "array bounds": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string",
                                                                                         "maxLength": 4},
                                                               "minItems": 1, "maxItems": 3}},
                     "required": ["tags"], "additionalProperties": False},
    "anyOf, const and null": {"type": "object", "properties": {
        "v": {"anyOf": [{"type": "null"}, {"const": "台灣"}, {"type": "integer", "minimum": 0, "maximum": 9}]}},
        "required": ["v"], "additionalProperties": False},
    "$ref and allOf": {"$defs": {"id": {"type": "integer", "minimum": 1, "maximum": 99}},
                       "allOf": [{"type": "object", "properties": {"id": {"$ref": "#/$defs/id"}}, "required": ["id"]},
                                 {"type": "object", "maxProperties": 2}],
                       "properties": {"id": {}, "ok": {"type": "boolean"}}, "additionalProperties": False},
    "date format": {"type": "object", "properties": {"day": {"type": "string", "format": "date"}},
                    "required": ["day"], "additionalProperties": False},
    "prefixItems": {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 9},
                                                     {"enum": ["a", "b"]}], "items": False, "minItems": 2},
}

# What llguidance cannot enforce: refused, naming it (never accepted and ignored).
REFUSED = {
    "not": ({"not": {"type": "string"}}, "not"),
    "uniqueItems": ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    "if/then": ({"if": {"type": "string"}, "then": {"minLength": 2}}, "if"),
    "oneOf": ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf"),
    "oneOf, coerced by the schema itself": ({"oneOf": [{"type": "integer"}, {"type": "number"}],
                                             "x-guidance": {"coerce_one_of": True}},
                                            "oneOf"),
    "contains, leniency asked for": ({"type": "array", "contains": {"type": "integer"}, "x-guidance": {"lenient": True}},
                                   "contains"),
    "unknown format": ({"type": "string", "format": "taiwan-id"}, "taiwan-id"),
    "look-around": ({"type": "string", "pattern": "^(?=a)ab$"}, "look-around"),
    "unsatisfiable": ({"type": "integer", "minimum": 5, "maximum": 3}, "minimum"),
    "remote $ref": ({"$ref": "https://example.com/schema.json"}, "example.com"),
    "not an object": ([{"type": "string"}], "must be a JSON object"),
}


@pytest.fixture(scope="module")
def tiny_gguf_engine(tiny_model_dir, tmp_path_factory):
    from taide.export import export_model

    gguf = export_model(tiny_model_dir, "gguf", "f32", tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf").path
    engine = load_engine(str(gguf), "llamacpp", n_ctx=256, n_parallel=4)
    yield engine
    engine.close()


@pytest.fixture(params=["transformers", "llamacpp"])
def engine(request, tiny_engine):
    return tiny_engine if request.param == "transformers" else request.getfixturevalue("tiny_gguf_engine")


def check(schema, text: str) -> None:
    import jsonschema

    value = json.loads(text)
    jsonschema.validate(value, {"type": "object"} if schema is True else schema,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_finished_answer_validates(engine, name):
    schema = SCHEMAS[name]
    params = [GenerationParams(max_tokens=120, temperature=0, json_schema=schema)] + [
        GenerationParams(max_tokens=120, temperature=1.5, top_k=0, top_p=1.0, seed=seed, json_schema=schema)
        for seed in range(4)]
    answers = [engine.chat(ASK, p) for p in params]
    finished = [a for a in answers if a.finish_reason == "stop"]
    assert finished, [a.text for a in answers]
    for answer in finished:
        check(schema, answer.text)


@pytest.mark.parametrize("name", REFUSED)
def test_schemas_it_cannot_enforce_are_refused_before_any_work(engine, name):
    schema, named = REFUSED[name]
    before = engine.stats()["submitted"]
    with pytest.raises(EngineError, match=f"(?s)json_schema: .*{re.escape(named)}"):
        engine.chat(ASK, GenerationParams(max_tokens=8, json_schema=schema))
    with pytest.raises(EngineError, match="json_schema"):
        engine.complete("{", GenerationParams(max_tokens=8, json_schema=schema))
    assert engine.stats()["submitted"] == before


def test_a_token_the_mask_forbids_is_never_taken(engine):
    """The mask's safety net: a sampler whose arithmetic broke (a repetition penalty of 5e-324 was 0 in float32, and
    0 × -inf is NaN) once chose a token the grammar forbade, and llama.cpp's grammar sampler aborted the process on it
    ("Unexpected empty grammar stack after accepting piece"). A forbidden token is replaced by the likeliest allowed
    one, and the grammar goes on."""
    import numpy as np

    constraint = engine.grammars.constraint(SCHEMAS["enum and boolean"])
    logits = np.random.default_rng(0).standard_normal(engine.vocab_size).astype(np.float32)
    constraint.mask(logits)
    forbidden = int(np.flatnonzero(np.isneginf(logits))[0])
    token = constraint.accept(forbidden, logits)
    assert token == int(np.argmax(logits)) and np.isfinite(logits[token])
    assert not constraint.matcher.is_error()


def test_the_sampling_limits_give_json(engine):
    """The edges of what a request may ask (repetition penalty 0.01, temperature 5) still answer JSON."""
    for temperature in (0, 5.0):
        params = GenerationParams(max_tokens=16, temperature=temperature, seed=1, repetition_penalty=0.01,
                                  json_schema=True)
        answer = engine.complete("0", params)
        assert answer.finish_reason in ("stop", "length") and answer.text.startswith("{")
        if answer.finish_reason == "stop":
            check(True, answer.text)


def test_constrained_and_free_answers_share_a_batch(tiny_gguf_engine):
    """Slots decode together: the JSON answer is masked, its neighbours are not."""
    free = GenerationParams(max_tokens=24, temperature=0)
    alone = tiny_gguf_engine.chat(ASK, free).text
    schema = SCHEMAS["enum and boolean"]
    handles = [tiny_gguf_engine.open_stream(ASK, free),
               tiny_gguf_engine.open_stream(ASK, GenerationParams(max_tokens=40, temperature=0, json_schema=schema)),
               tiny_gguf_engine.open_stream(ASK, free)]
    results = [list(h)[-1].completion for h in handles]
    assert results[0].text == results[2].text == alone
    check(schema, results[1].text)
    assert results[1].text != alone
