#!/usr/bin/env bash
# Installs streamchar into ./.venv: the CPU torch pin, then the package with its test extra.
# Idempotent; no prompts. Users with GPUs install their own torch build first (pyproject takes a range).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
