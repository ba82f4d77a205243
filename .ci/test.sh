#!/usr/bin/env bash
# The whole test suite, from a fresh clone, with only Python 3 and pip on the machine.
# Creates .venv (reused on later runs), installs the test tools and Determined's client, runs
# ruff, mypy and pytest. CI=true turns every would-be skip into an error (see tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
$PY -m pip install --quiet --upgrade pip
$PY -m pip install --quiet -e '.[test]'
# Determined 0.38.1's own client code (the oracle for selection, size and loading) without its
# heavy dependency tree, plus a CPU torch for the training test (DESIGN: pin torch==2.13.0).
$PY -m pip install --quiet --no-deps determined==0.38.1
$PY -m pip install --quiet appdirs filelock psutil requests ruamel.yaml urllib3 certifi idna \
  charset-normalizer numpy packaging tensorboard torch==2.13.0
git --version
$PY -m ruff check .
$PY -m mypy
# pytest exits 5 when no test ran: that is a failure here, and so it stays non-zero.
$PY -m pytest "$@"
