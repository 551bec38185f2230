"""Request bodies of the OpenAI routes. Unknown fields are ignored, as OpenAI's API does."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from taide.engines import GenerationParams
from taide.engines.params import LIMITS as PARAM_LIMITS
from taide.engines.params import MAX_TOP_LOGPROBS
from taide.errors import EngineError

MAX_PROMPTS = 64  # prompts in one /v1/completions request
# Every limit of a request, in /v1/models too (the body's size, which depends on the model, is added there).
LIMITS = {**PARAM_LIMITS, "n": 1, "prompts": MAX_PROMPTS}
_STOP = Annotated[str, Field(min_length=1, max_length=LIMITS["stop_characters"])]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: Literal["text"]
    text: str


class Message(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class StreamOptions(_Lenient):
    include_usage: bool = False


def _depth(value, level: int = 0) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


class JsonSchemaFormat(_Lenient):
    name: str | None = None
    schema_: dict = Field(default_factory=dict, alias="schema",
                          description=f"at most {LIMITS['json_schema_bytes']:,} bytes as JSON, nested at most "
                                      f"{LIMITS['json_schema_depth']} levels")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _bounded(cls, schema: dict) -> dict:
        size = len(json.dumps(schema, ensure_ascii=False).encode())
        if size > LIMITS["json_schema_bytes"]:
            raise ValueError(f"the schema is {size:,} bytes as JSON; at most {LIMITS['json_schema_bytes']:,}")
        if _depth(schema) > LIMITS["json_schema_depth"]:
            raise ValueError(f"the schema nests more than {LIMITS['json_schema_depth']} levels")
        return schema


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class _Sampling(_Lenient):
    model: str | None = None
    temperature: float | None = Field(None, ge=0, le=LIMITS["temperature"][1],
                                      description="0 (or below 1e-6) is greedy")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1, le=LIMITS["top_k"][1], description="-1 or 0: off")
    min_p: float | None = Field(None, ge=0, le=1, description="0: off")
    repetition_penalty: float | None = Field(None, ge=LIMITS["repetition_penalty"][0],
                                             le=LIMITS["repetition_penalty"][1])
    max_tokens: int | None = Field(None, ge=1, description="default: the server's default_max_tokens (/v1/models)")
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    stop: _STOP | Annotated[list[_STOP], Field(max_length=LIMITS["stop"])] | None = None
    seed: int | None = Field(None, ge=LIMITS["seed"][0], le=LIMITS["seed"][1])
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice per request.")
    response_format: ResponseFormat | None = None

    def logprob_params(self) -> dict:
        return {}

    def params(self, default_max_tokens: int | None) -> GenerationParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        fmt, schema = self.response_format, None
        if fmt is not None and fmt.type == "json_object":
            schema = True
        elif fmt is not None and fmt.type == "json_schema":
            if fmt.json_schema is None:
                raise EngineError("response_format.json_schema: required when type is json_schema")
            schema = fmt.json_schema.schema_ or True
        return GenerationParams(
            max_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=max(self.top_k or 0, 0), min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            stop=stop, seed=self.seed, json_schema=schema, **self.logprob_params())


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def logprob_params(self) -> dict:
        if self.top_logprobs is not None and not self.logprobs:
            raise EngineError("top_logprobs: needs logprobs: true")
        return {"logprobs": (self.top_logprobs or 0) if self.logprobs else None}


TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]


class CompletionRequest(_Sampling):
    prompt: (Annotated[str, Field(min_length=1)]
             | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_PROMPTS)]
             | TokenIds
             | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)])
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False

    def logprob_params(self) -> dict:
        return {"logprobs": self.logprobs, "prompt_logprobs": self.echo and self.logprobs is not None}

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: text, or token ids."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        return list(self.prompt)


class TokenizeRequest(_Lenient):
    """vLLM's /tokenize: a text, or messages rendered with the model's chat format."""

    model: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = Field(None, min_length=1)
    add_special_tokens: bool = True


class DetokenizeRequest(_Lenient):
    model: str | None = None
    tokens: list[Annotated[StrictInt, Field(ge=0)]]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape, for every status other than 200."""

    error: ErrorDetail
