#!/usr/bin/env bash
# Installs streamchar into ./.venv: the CPU torch pin, then the package with its test extra.
# Idempotent; no prompts. Users with GPUs install their own torch build first (pyproject takes a range).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages: espeak-ng speaks SynthTalk's sentences (libespeak-ng, through ctypes).
if ! ldconfig -p 2>/dev/null | grep libespeak-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "install.sh: espeak-ng is missing; run: sudo apt-get install -y espeak-ng" >&2
    exit 1
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
