"""An OpenAI-compatible server and web chat over any taide engine."""

from taide.serve.app import ServeConfig, create_app, run_serve

__all__ = ["ServeConfig", "create_app", "run_serve"]
