"""A multi-turn conversation's state: system prompt, history, reset, and saving the transcript
as a ``{"messages": [...]}`` JSONL record (the same shape `taide train sft` reads)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from taide.chat.presets import messages_with_system


class ChatSession:
    def __init__(self, system: str | None = None):
        self.system = system
        self.turns: list[dict] = []

    def messages(self) -> list[dict]:
        return messages_with_system(self.turns, self.system)

    def add_user(self, text: str) -> list[dict]:
        """Add the user's turn and return the whole conversation to send."""
        self.turns.append({"role": "user", "content": text})
        return self.messages()

    def add_assistant(self, text: str) -> None:
        self.turns.append({"role": "assistant", "content": text})

    def drop_last_user(self) -> None:
        """Undo a user turn whose answer failed, so the history stays alternating."""
        if self.turns and self.turns[-1]["role"] == "user":
            self.turns.pop()

    def reset(self) -> None:
        self.turns.clear()

    def save(self, path: str | Path) -> Path:
        """Append the conversation to a JSONL file; returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"id": datetime.now(timezone.utc).strftime("chat-%Y%m%dT%H%M%S%fZ"), "messages": self.messages()}
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return path
