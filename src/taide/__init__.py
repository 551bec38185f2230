"""taide: build, serve and evaluate Taiwan Traditional-Chinese chat models.

The five-line tour::

    from taide import load_engine, GenerationParams
    engine = load_engine("smollm2-135m")            # the embedded default; or an HF dir, a .gguf, a URL
    reply = engine.chat([{"role": "user", "content": "台灣最高的山是哪一座？"}],
                        GenerationParams(max_tokens=64, temperature=0))
    print(reply.text, reply.tokens_per_second)
"""

from taide.engines import Completion, Engine, GenerationParams, load_engine
from taide.errors import TaideError
from taide.models import ModelRef, resolve_model

__all__ = ["Completion", "Engine", "GenerationParams", "ModelRef", "TaideError", "load_engine", "resolve_model"]
__version__ = "0.1.0"
