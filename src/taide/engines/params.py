"""What a request may ask of generation, and what it gets back per token: the parameters every engine takes, checked
once where they are made, and their limits, which the server's request schemas state as well."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from taide.errors import EngineError

MAX_TOP_LOGPROBS = 20  # OpenAI's limit for top_logprobs
# What a request may ask of generation, in one place: GenerationParams checks these, and the server's request
# schemas (serve/schemas.py) state them in /openapi.json. Outside them an engine cannot honour the value (a penalty
# of 5e-324 divides logits into infinities).
LIMITS = {"temperature": (0.0, 5.0), "top_p": (0.0, 1.0), "top_k": (-1, 1_000_000), "min_p": (0.0, 1.0),
          "repetition_penalty": (0.01, 5.0), "seed": (-(2**63), 2**63 - 1), "stop": 16, "stop_characters": 256,
          "top_logprobs": MAX_TOP_LOGPROBS, "json_schema_bytes": 65536, "json_schema_depth": 32}
GREEDY_BELOW = 1e-6  # a temperature this close to 0 is greedy: dividing logits by it overflows float32


@dataclass
class TokenLogprob:
    """One token with its log-probability: ``token`` is its text (a piece of a character shows as U+FFFD; ``bytes``
    are exact); ``logprob`` is None for a prompt's first token, which nothing predicts; ``top`` holds the most likely
    tokens at that place, best first."""

    token: str
    bytes: list[int]
    logprob: float | None
    top: list[TokenLogprob] = field(default_factory=list)
    ends_turn: bool = False  # an end-of-turn token: counted in completions' logprobs, not part of a chat message


@dataclass
class GenerationParams:
    max_tokens: int | None = 512  # None: up to the end of the context window
    # llama.cpp's defaults for nucleus and top-k, so a small model's long tail of rare tokens is cut off
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.95
    top_k: int = 40  # 0 means off
    min_p: float = 0.0  # tokens less likely than min_p × the likeliest are dropped; 0 means off
    repetition_penalty: float = 1.0  # 1.0 means off
    stop: list[str] = field(default_factory=list)  # strings that end the answer (not included)
    seed: int | None = None
    # Structured output: True, any JSON object; a dict, a JSON schema the answer must match (decoding is
    # constrained); None: free text.
    json_schema: dict | bool | None = None
    # Log-probabilities: None, none; k (0-20), each answer token's and the k most likely alternatives at its place.
    logprobs: int | None = None
    prompt_logprobs: bool = False  # also each prompt token's (after the first), as completions' echo reports them

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        low_rp, high_rp = LIMITS["repetition_penalty"]
        low_seed, high_seed = LIMITS["seed"]
        checks = [
            ("max_tokens", self.max_tokens is None or self.max_tokens >= 1, "at least 1"),
            ("temperature", 0 <= self.temperature <= LIMITS["temperature"][1], "between 0 and 5"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("top_k", 0 <= self.top_k <= LIMITS["top_k"][1], "0 (off) or more, at most 1,000,000"),
            ("min_p", 0 <= self.min_p <= 1, "between 0 (off) and 1"),
            ("repetition_penalty", low_rp <= self.repetition_penalty <= high_rp, f"between {low_rp} and {high_rp}"),
            ("seed", self.seed is None or low_seed <= self.seed <= high_seed, "a 64-bit integer"),
            ("stop", len(self.stop) <= LIMITS["stop"] and all(isinstance(s, str) and 0 < len(s) <= LIMITS[
                "stop_characters"] for s in self.stop), "at most 16 non-empty strings of at most 256 characters"),
            ("logprobs", self.logprobs is None or 0 <= self.logprobs <= MAX_TOP_LOGPROBS,
             f"between 0 and {MAX_TOP_LOGPROBS}"),
        ]
        for name, ok, limit in checks:
            if not ok:
                raise EngineError(f"generation parameter {name}={getattr(self, name)!r} must be {limit}")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def to_dict(self) -> dict:
        return asdict(self)
