"""Training in several processes from a running program (`taide build`): the config is written beside the run,
``torchrun --standalone --nproc_per_node N -m taide.train.launch OUT/launch.json`` trains it (gloo on CPU, NCCL
on GPUs, FSDP2 either way), and process 0 writes the result to ``OUT/result.json`` for the caller."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from taide.artifacts import write_json
from taide.train.config import TrainConfig, TrainError


def train_in_processes(config: TrainConfig, processes: int, resume: bool | str = "if_any"):
    """``run_train(config)`` under torchrun with ``processes`` processes on this machine; the same TrainResult."""
    from taide.train.trainer import TrainResult

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    spec, result = out / "launch.json", out / "result.json"
    result.unlink(missing_ok=True)
    spec.write_text(json.dumps({"config": config.to_dict(), "resume": resume}), encoding="utf-8")
    threads = max(1, (os.cpu_count() or processes) // processes)  # the processes share the cores, not oversubscribe
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "taide.train.launch", str(spec)]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0 or not result.is_file():
        raise TrainError(f"training under torchrun ({processes} processes) failed with exit status "
                         f"{done.returncode}:\n{done.stderr[-3000:]}")
    values = json.loads(result.read_text(encoding="utf-8"))
    spec.unlink()
    result.unlink()
    # The processes chose seq_len and the batch from the data when the config left them open.
    for key in ("seq_len", "global_batch_tokens"):
        setattr(config, key, values["config"][key])
    return TrainResult(Path(values["out"]), values["steps"], values["tokens"], values["final_loss"],
                       values["heldout_loss"], values["heldout_loss_before"], values["history"], values["data"],
                       Path(values["heldout"]) if values.get("heldout") else None, values["decontamination"])


def main(spec_path: str) -> None:
    from taide.train.trainer import run_train

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    config = TrainConfig(**spec["config"])
    result = run_train(config, resume=spec["resume"])
    if int(os.environ.get("RANK", "0")) == 0:
        values = {**dataclasses.asdict(result), "out": str(result.out), "config": config.to_dict()}
        write_json(Path(config.out) / "result.json", values)


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    # record: torchrun's closing summary then names the first process that failed and its exception, which is the
    # end of stderr, the part TrainError quotes (the others only report the connection it broke).
    record(main)(sys.argv[1])
