#!/usr/bin/env bash
# Set up taide in ./.venv: the one install script behind both README commands.
#   bash scripts/install.sh          # taide and its engines
#   bash scripts/install.sh --dev    # plus the test tools
#   bash scripts/install.sh --bench  # plus the test tools and what bench/ compares against (datatrove, ...)
# torch: the CPU build is installed unless a torch is already in the venv. For a GPU, install the CUDA
# build of torch into .venv first (see README, "GPU"); this script keeps whatever torch it finds.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"
[[ "${1:-}" == "--bench" ]] && extras="[dev,bench]"

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
py=.venv/bin/python
"$py" -m pip install --quiet --upgrade pip

# An unpinned `torch` would pull a multi-GB CUDA build; pin the CPU release unless one is present.
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "installing torch ${TAIDE_TORCH_VERSION:-2.13.0} (CPU build where the machine provides it)…"
  "$py" -m pip install --quiet "torch==${TAIDE_TORCH_VERSION:-2.13.0}"
fi

# llama-cpp-python compiles from source the first time (~5 minutes on 2 cores); pip caches the wheel.
echo "installing taide${extras}…"
"$py" -m pip install --quiet -e ".${extras}"
echo "taide is installed in .venv ($(.venv/bin/taide --version 2>/dev/null || echo ok))"
