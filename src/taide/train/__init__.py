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
from taide.train.trainer import TrainResult, train

__all__ = ["LoraConfig", "TrainConfig", "TrainError", "TrainResult", "load_recipe", "train"]
