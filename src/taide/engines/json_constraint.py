"""Structured output for the transformers engine: each step, tokens that cannot continue valid JSON (matching the
request's schema) get a logit of -inf, with llguidance's token masks. The llamacpp engine does the same with
llama.cpp's grammar sampler (``llamacpp_engine.json_grammar``)."""

from __future__ import annotations

import torch

from taide.errors import EngineError


class JsonGrammars:
    """JSON grammars for one tokenizer (llguidance); the end-of-turn tokens are what may follow a finished value."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: set[int]):
        self.tokenizer, self.vocab_size, self.stop_ids = tokenizer, vocab_size, sorted(stop_ids)
        self._llg = None  # llguidance's tokenizer, made on first use (it reads the whole vocabulary)

    def grammar(self, schema: dict | bool) -> str:
        """The grammar for ``schema`` (True: any JSON object); EngineError names what of the schema it cannot express."""
        llguidance = self._llguidance()
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            {"type": "object"} if schema is True else schema, defaults={"whitespace_flexible": False})
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
        if failed:
            raise EngineError(f"json_schema: cannot constrain decoding to this schema: {'; '.join(messages)}")
        return grammar

    def matcher(self, schema: dict | bool):
        llguidance = self._llguidance()
        if self._llg is None:
            self._llg = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size, eos_token=self.stop_ids)
        return llguidance.LLMatcher(self._llg, self.grammar(schema))

    @staticmethod
    def _llguidance():
        try:
            import llguidance
            import llguidance.hf
            import llguidance.torch
        except ImportError as e:
            raise EngineError("json_schema: structured output on the transformers engine needs llguidance: "
                              "pip install llguidance") from e
        return llguidance


class JsonConstraint:
    """The grammar state of the rows of one batch that asked for JSON."""

    def __init__(self, grammars: JsonGrammars, schemas: list[dict | bool | None]):
        import llguidance.torch

        self.torch_ops = llguidance.torch
        self.matchers = {i: grammars.matcher(schema) for i, schema in enumerate(schemas) if schema}
        self.bitmask = llguidance.torch.allocate_token_bitmask(len(schemas), grammars.vocab_size)
        self.stop_ids = grammars.stop_ids

    @classmethod
    def for_rows(cls, engine, params: list) -> JsonConstraint | None:
        schemas = [p.json_schema for p in params]
        return cls(engine.grammars, schemas) if any(schemas) else None

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        live = [i for i, matcher in self.matchers.items() if not matcher.is_stopped()]
        for i in live:
            self.torch_ops.fill_next_token_bitmask(self.matchers[i], self.bitmask, i)
        if live:
            rows = logits[live]
            self.torch_ops.apply_token_bitmask_inplace(rows, self.bitmask[live].to(logits.device))
            logits[live] = rows
        for i in self.matchers.keys() - set(live):  # the value is complete: only the end of the turn may follow
            ends = logits[i, self.stop_ids].clone()
            logits[i] = float("-inf")
            logits[i, self.stop_ids] = ends
        return logits

    def accept(self, tokens: list[int]) -> None:
        for i, matcher in self.matchers.items():
            if not matcher.is_stopped():
                matcher.consume_token(tokens[i])
