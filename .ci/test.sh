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
# Go's archive/tar + compress/gzip (what Determined's master reads uploads with) for the reader check.
if ! command -v go >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
fi
# The oldest Python the package supports (requires-python >= 3.9): the core tests run there too.
OLDEST=""
if command -v pyenv >/dev/null 2>&1; then
  version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.9(\.|$)' | tail -n 1 || true)
  [ -n "$version" ] && OLDEST="$(pyenv root)/versions/$version/bin/python"
fi
if [ -n "$OLDEST" ] && [ -x "$OLDEST" ]; then
  [ -x .venv-oldest/bin/python ] || "$OLDEST" -m venv .venv-oldest
  .venv-oldest/bin/python -m pip install --quiet -e . pytest hypothesis
  DETMODEL_GIT_EXAMPLES=200 .venv-oldest/bin/python -m pytest -q -p no:cacheprovider tests/test_config.py \
    tests/test_selection.py tests/test_entrypoint.py tests/test_pipeline.py tests/test_ignore_git.py tests/test_ignore.py tests/test_secret_guard.py
elif [ "${CI:-}" = "true" ]; then
  echo "Python 3.9 (the oldest supported) was not found; install it (pyenv install 3.9)" >&2
  exit 1
fi
$PY -m ruff check .
$PY -m mypy
# pytest exits 5 when no test ran: that is a failure here, and so it stays non-zero.
$PY -m pytest "$@"
