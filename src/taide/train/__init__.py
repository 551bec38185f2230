"""Continued pretraining and instruction tuning (`taide train`): a trainer to read top to bottom, with
data, parallelism, checkpointing and metrics as separate components.

- ``config``: the run's settings (a YAML recipe + flags), batch arithmetic in tokens
- ``packing`` / ``sft_data`` / ``datasets``: CP documents and SFT conversations into packed sequences
- ``parallel``: one process or torchrun + FSDP2
- ``checkpoint``: resumable state in safetensors + JSON
- ``metrics``: FLOPs per token, MFU, JSONL/TensorBoard logs, the loss curve
- ``model``: loading, LoRA, the final Hugging Face directory
- ``trainer``: the loop
"""

from taide.train.config import LoraConfig, TrainConfig, TrainError, load_recipe

__all__ = ["LoraConfig", "TrainConfig", "TrainError", "TrainResult", "load_recipe", "run_train"]


def __getattr__(name: str):
    """``run_train`` and ``TrainResult`` load torch: imported on first use, so that reading a recipe (``taide build
    --dry-run`` checks its stages' keys against TrainConfig) stays quick."""
    if name in ("run_train", "TrainResult"):
        from taide.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'taide.train' has no attribute {name!r}")
