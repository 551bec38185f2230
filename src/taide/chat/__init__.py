"""Chat formats and presets: messages -> token ids, safely, the same way for training, serving,
evaluation and export."""

from taide.chat.formats import (
    GEMMA3_TEMPLATE,
    LLAMA3_TEMPLATE,
    ChatFormat,
    GemmaFormat,
    Llama3Format,
    TemplateFormat,
    TokenCodec,
    chat_format_for,
    validate_messages,
)
from taide.chat.presets import (SYSTEM_PRESETS, TAIDE_SYSTEM_PROMPT, TASKS, Task, default_system_prompt,
                                messages_with_system, resolve_system_prompt, task_messages)
from taide.chat.traditional import TraditionalGuard

__all__ = [
    "GEMMA3_TEMPLATE", "LLAMA3_TEMPLATE", "SYSTEM_PRESETS", "TAIDE_SYSTEM_PROMPT", "TASKS", "ChatFormat", "GemmaFormat",
    "Llama3Format", "Task", "TemplateFormat", "TokenCodec", "TraditionalGuard", "chat_format_for",
    "default_system_prompt", "messages_with_system", "resolve_system_prompt", "task_messages", "validate_messages",
]
