"""Which model a benchmark of "the built model" runs: the GGUF of the newest finished `taide build` on this machine
when it is a Gemma 3 (what `taide build` makes by default), else the embedded google/gemma-3-270m it starts from."""

from __future__ import annotations

EMBEDDED_GEMMA = "gemma3-270m"


def built_gemma() -> tuple[str, str]:
    """(model reference, a sentence saying which model it is and why), for the benchmark's report."""
    from taide.models import latest_build
    from taide.models import resolve_model

    built = latest_build()
    if built is None:
        return EMBEDDED_GEMMA, (f"no finished `taide build` on this machine, so the embedded `{EMBEDDED_GEMMA}` "
                                "(google/gemma-3-270m, Q4_K_M) it starts from")
    arch = resolve_model(built).metadata.get("general.architecture") if built.endswith(".gguf") else None
    if arch != "gemma3":
        return EMBEDDED_GEMMA, (f"the newest `taide build` ({built}) is not a Gemma 3 GGUF ({arch or 'not a GGUF'}), "
                                f"so the embedded `{EMBEDDED_GEMMA}` (google/gemma-3-270m, Q4_K_M) it starts from")
    return built, f"the newest `taide build`: `{built}`"
