"""Structured output for every local engine: each step, tokens that cannot continue JSON matching the request's
schema (any JSON object for ``True``) get a logit of -inf, with llguidance's token masks. llguidance walks a trie of
the vocabulary that it builds once per engine, so a mask costs about a tenth of a millisecond even for Gemma 3's
262,144 tokens, where llama.cpp's grammar sampler, which tries every token against the grammar, cost most of each
step. The engines differ only in how llguidance reads their vocabulary (``llguidance.hf`` from a transformers
tokenizer, ``llguidance.llamacpp`` from a GGUF's) and in where the logits live."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from taide.errors import EngineError

# JSON as json.dumps writes it (the form models have read most), and no other whitespace: a small model's runs of
# newlines or spaces cannot fill the token budget.
LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# Applied over the schema's own "x-guidance" options: never ignore a keyword llguidance cannot enforce ("lenient"),
# nor read oneOf as anyOf ("coerce_one_of"), so an accepted schema is one every finished answer validates against.
STRICT = {"lenient": False, "coerce_one_of": False}


def _llguidance():
    try:
        import llguidance
    except ImportError as e:
        raise EngineError("json_schema: structured output needs llguidance: pip install llguidance") from e
    return llguidance


class JsonGrammars:
    """JSON grammars over one engine's vocabulary. ``make_tokenizer`` gives llguidance's view of the vocabulary; it
    reads every token (seconds for 262K tokens), so it runs on the first request that asks for JSON, once."""

    def __init__(self, make_tokenizer: Callable[[], object], vocab_size: int):
        self.make_tokenizer, self.vocab_size = make_tokenizer, vocab_size
        self._tokenizer = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self.make_tokenizer()
            return self._tokenizer

    def constraint(self, schema: dict | bool) -> JsonConstraint:
        """A fresh constraint for ``schema``; EngineError names what of the schema cannot be enforced (an unknown
        keyword or format, a regex with look-around, oneOf, an unsatisfiable schema, ...)."""
        llguidance = _llguidance()
        if not (schema is True or isinstance(schema, dict)):
            raise EngineError("json_schema: a schema must be a JSON object (or true for any JSON object)")
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                {"type": "object"} if schema is True else schema, defaults=LAYOUT, overrides=STRICT)
            failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        except (ValueError, TypeError) as e:
            raise EngineError(f"json_schema: cannot constrain decoding to this schema: {e}") from e
        if failed:
            raise EngineError(f"json_schema: cannot constrain decoding to this schema: {'; '.join(messages)}")
        matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise EngineError(f"json_schema: cannot constrain decoding to this schema: {matcher.get_error()}")
        return JsonConstraint(matcher, self.vocab_size)


class JsonConstraint:
    """One answer's place in its grammar: which tokens may come next, and the token that came. Once the value is
    complete, only the end-of-turn tokens may follow (llguidance's mask says so)."""

    def __init__(self, matcher, vocab_size: int):
        self.matcher, self.vocab_size = matcher, vocab_size
        self._bits = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        self._disallowed: np.ndarray | None = None

    def disallowed(self) -> np.ndarray:
        """A boolean mask over the vocabulary: True where a token cannot come next."""
        self.matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        if self.matcher.is_error():
            raise EngineError(f"json_schema: the constraint failed while decoding: {self.matcher.get_error()}")
        self._disallowed = np.unpackbits((~self._bits).view(np.uint8), count=self.vocab_size,
                                         bitorder="little").view(bool)
        return self._disallowed

    def mask(self, logits: np.ndarray) -> None:
        """Set the logits (one row, float32, in place) of tokens that cannot come next to -inf."""
        np.copyto(logits, -np.inf, where=self.disallowed())

    def accept(self, token: int, masked_logits) -> int:
        """Advance past ``token``, chosen from the logits :meth:`mask` left. Should a sampler still choose a forbidden
        token (llama.cpp's grammar sampler met one when a repetition penalty of 5e-324, 0 in float32, made 0 × -inf a
        NaN, and aborted the process), the likeliest allowed one is taken instead, as greedy decoding would."""
        if self._disallowed[token]:
            token = int(masked_logits.argmax())
        if not self.matcher.consume_token(token):
            raise EngineError(f"json_schema: the constraint failed while decoding: {self.matcher.get_error()}")
        return token
