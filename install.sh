#!/bin/sh
# Install scratchgpt from this checkout into the active Python environment, with the PyTorch
# build that fits the machine:
#   - an NVIDIA GPU (nvidia-smi answers): PyPI's default build, which bundles CUDA;
#   - macOS: PyPI's default build (CPU and Apple's MPS; there is no CUDA build);
#   - anything else: PyTorch's CPU-only build, about 200 MB instead of several GB of CUDA
#     libraries that a machine without a GPU never uses.
# A torch that is already installed is kept. Extras go in the first argument:
#   sh install.sh            the library and the scratchgpt command
#   sh install.sh plot,hf    with the plot and hf extras
# Environment: PYTHON (default python3), TORCH_INDEX_URL (default PyTorch's CPU index).
set -eu
PYTHON=${PYTHON:-python3}
EXTRAS=${1:-}
CPU_INDEX=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
cd "$(dirname "$0")"

if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "install.sh: keeping the installed torch"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    echo "install.sh: an NVIDIA GPU answers: installing PyTorch with CUDA"
    "$PYTHON" -m pip install torch
elif [ "$(uname -s)" = Darwin ]; then
    echo "install.sh: macOS: installing PyTorch (CPU and MPS)"
    "$PYTHON" -m pip install torch
else
    echo "install.sh: no NVIDIA GPU: installing PyTorch's CPU-only build from $CPU_INDEX"
    "$PYTHON" -m pip install torch --index-url "$CPU_INDEX"
fi
if [ -n "$EXTRAS" ]; then
    "$PYTHON" -m pip install -e ".[$EXTRAS]"
else
    "$PYTHON" -m pip install -e .
fi
