"""GGUF models on llama.cpp (llama-cpp-python): the fast CPU engine. The prompt is rendered by taide's
chat format to token ids and handed to llama.cpp as ids, so both engines see the same prompt."""

from __future__ import annotations

import codecs
import os
import random
from collections.abc import Iterator

from taide.chat.formats import chat_format_for
from taide.engines.base import Detokenizer, GenerationParams, LocalEngine
from taide.errors import EngineError, ModelError
from taide.models import ModelRef

DEFAULT_MAX_CONTEXT = 8192  # the KV cache of a 128K-context model would not fit a laptop; raise with n_ctx


class LlamaCppCodec:
    def __init__(self, llm):
        self.llm = llm
        self._controls: list[str] | None = None

    def encode_text(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def token_id(self, token: str) -> int | None:
        ids = self.llm.tokenize(token.encode("utf-8"), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def control_tokens(self) -> list[str]:
        if self._controls is None:
            import llama_cpp

            vocab = self.llm._model
            self._controls = [vocab.token_get_text(i) for i in range(vocab.n_vocab())
                              if vocab.token_get_attr(i) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL]
        return self._controls


class LlamaCppDetokenizer(Detokenizer):
    """Token pieces are bytes; an incremental UTF-8 decoder holds a character split across tokens."""

    def __init__(self, llm):
        self.llm = llm
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id: int) -> str:
        return self.decoder.decode(self.llm.detokenize([token_id]))

    def flush(self) -> str:
        self.decoder.reset()  # bytes of a character cut off by the token limit are dropped
        return ""


class LlamaCppEngine(LocalEngine):
    name = "llamacpp"
    max_batch_size = 1  # the high-level llama-cpp-python API holds one sequence

    def __init__(self, model: ModelRef, chat_format: str | None = None, n_ctx: int | None = None,
                 n_threads: int | None = None, n_gpu_layers: int = 0, **_ignored):
        if model.kind != "gguf":
            raise EngineError(f"the llamacpp engine runs GGUF files; {model.reference} is a {model.kind} model "
                              "(use --engine transformers, or export it to GGUF)")
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise EngineError("the llamacpp engine needs llama-cpp-python: pip install llama-cpp-python") from e
        self.model = model
        n_ctx = n_ctx or min(model.context_length or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
        try:
            self.llm = Llama(model_path=str(model.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                             n_gpu_layers=n_gpu_layers, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{model.path}: llama.cpp cannot load this model: {e}") from e
        self.codec = LlamaCppCodec(self.llm)
        self.chat_format = chat_format_for(chat_format or model.chat_format, model.chat_template,
                                           model.bos_token, model.eos_token)
        self.context_length = self.llm.n_ctx()
        import llama_cpp

        vocab = self.llm._model.vocab
        ends = {i for i in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)}
        ends.update(i for i in (self.codec.token_id(t) for t in self.chat_format.stop_tokens) if i is not None)
        self.eos_ids = ends

    def detokenizer(self) -> Detokenizer:
        return LlamaCppDetokenizer(self.llm)

    def token_steps(self, prompts: list[list[int]], params: GenerationParams, max_new: int) -> Iterator[list[int]]:
        if len(prompts) != 1:
            raise EngineError("the llamacpp engine decodes one sequence at a time")
        self.llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        tokens = self.llm.generate(prompts[0], temp=params.temperature, top_k=params.top_k, top_p=params.top_p,
                                   min_p=0.0, repeat_penalty=params.repetition_penalty, reset=True)
        try:
            for count, token_id in enumerate(tokens, start=1):
                yield [token_id]
                if count >= max_new:
                    return
        finally:
            tokens.close()

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()
