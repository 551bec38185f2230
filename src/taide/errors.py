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
        super().__init__(self.message_for("messages"))

    def message_for(self, param: str) -> str:
        """The message for a request whose prompt is ``param``: "messages" (a conversation) or "prompt"."""
        if self.prompt_tokens >= self.context_length:
            what = "shorten the conversation" if param == "messages" else "shorten the prompt"
            return (f"the prompt has {self.prompt_tokens} tokens but the model's context window is "
                    f"{self.context_length} tokens; {what}")
        return (f"the prompt has {self.prompt_tokens} tokens and max_tokens asks for {self.max_tokens} more: "
                f"{self.prompt_tokens + self.max_tokens} > the context window of {self.context_length} tokens; "
                f"lower max_tokens to at most {self.context_length - self.prompt_tokens}")


class InputError(TaideError):
    """A user's input file has a bad record; the message names file, line and field."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
