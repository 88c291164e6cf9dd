#!/usr/bin/env bash
# Creates .venv (git-ignored) with the pinned Python tools the tests need: torch (the CPU build on disk),
# transformers, safetensors, pytest, ruff, mypy. Idempotent: a venv whose packages already match is kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lock=python/requirements-dev.txt
PY=${SCALELM_BOOTSTRAP_PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0)' 2>/dev/null; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
if [ -f .venv/.lock-installed ] && cmp -s "$lock" .venv/.lock-installed; then
  echo "[python] .venv up to date ($(.venv/bin/python --version))"
  exit 0
fi
echo "[python] installing $lock into .venv ($(.venv/bin/python --version))"
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$lock" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c 'import torch, transformers, safetensors; print("[python] torch", torch.__version__, "transformers", transformers.__version__)'
cp "$lock" .venv/.lock-installed
