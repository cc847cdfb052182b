#!/usr/bin/env bash
# Create .venv and install sameface for development, offline-friendly and small:
#  1. the CPU torch wheel first (an unpinned torch would pull a multi-GB CUDA build);
#     a torch that is already importable (e.g. your CUDA build) is kept;
#  2. sameface itself with the extras given as the first argument (default: dev);
#  3. clip-anytorch without its dependencies: we only read the real CLIP BPE vocabulary
#     file it ships (its torchvision dependency would pull another torch);
#  4. with the `ui` and `dev` extras, the OS's Chromium for the browser tests (Debian/Ubuntu apt-get,
#     as root or through sudo), unless a chromium is already on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXTRAS="${1:-dev}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "setup: installing the CPU torch wheel" >&2
    # TORCH_INDEX_URL: optionally point pip at a PyTorch CPU wheel index (see README).
    "${PIP[@]}" install "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
echo "setup: installing sameface[$EXTRAS]" >&2
"${PIP[@]}" install -e ".[$EXTRAS]"
# Last, so pip's resolver does not complain about the dependencies we skip on purpose.
"${PIP[@]}" install --no-deps --no-warn-conflicts "clip-anytorch==2.6.0"
if [[ ",$EXTRAS," == *",ui,"* && ",$EXTRAS," == *",dev,"* ]] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
    if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
        echo "setup: installing the OS's chromium (for the browser tests)" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    else
        echo "setup: no chromium and no apt-get/root to install it: the browser tests need" \
             "one on PATH (or skip them: pytest -m 'not browser')" >&2
    fi
fi
echo "setup: done; activate with: source $VENV/bin/activate" >&2
