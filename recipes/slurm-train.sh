#!/bin/bash
# Multi-node continued pretraining with Slurm: one torchrun per node, 8 GPUs each.
#   sbatch --nodes 8 recipes/slurm-train.sh recipes/llama3-taide-8b-cp.yaml cp
#SBATCH --job-name=taide-train
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --exclusive
set -euo pipefail
RECIPE=${1:?recipe}
MODE=${2:-cp}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun \
  --nnodes "$SLURM_NNODES" --nproc_per_node 8 \
  --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$HEAD:29500" \
  -m taide.cli train "$MODE" --recipe "$RECIPE" --resume-if-any
