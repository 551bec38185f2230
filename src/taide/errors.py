"""One exception type per package, all under :class:`TaideError`.

Messages are written for the person at the terminal: they name the file, line, field and the
limit that was crossed, and say what to do instead. The CLI prints them without a traceback.
"""


class TaideError(Exception):
    """Base of every error taide raises on purpose."""


class ModelError(TaideError):
    """A model reference cannot be resolved or its files are unusable."""


class ChatFormatError(TaideError):
    """Messages or a chat template that cannot be rendered."""


class EngineError(TaideError):
    """An engine is unknown, unavailable, or failed while generating."""


class ContextLengthError(EngineError):
    """The prompt (plus the requested new tokens) does not fit the model's context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, context_length: int):
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length
        if prompt_tokens >= context_length:
            msg = (f"the prompt has {prompt_tokens} tokens but the model's context window is "
                   f"{context_length} tokens; shorten the conversation")
        else:
            msg = (f"the prompt has {prompt_tokens} tokens and max_tokens asks for {max_tokens} more: "
                   f"{prompt_tokens + max_tokens} > the context window of {context_length} tokens; "
                   f"lower max_tokens to at most {context_length - prompt_tokens}")
        super().__init__(msg)


class InputError(TaideError):
    """A user's input file has a bad record; the message names file, line and field."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
