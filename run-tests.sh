#!/usr/bin/env bash
# Every test of the project: the Rust tests (cargo test) and the Helm chart and manifest tests
# (pytest, with Helm's engine from helm-python-sdk and the Kubernetes schemas of kubernetes-validate,
# installed from PyPI into .venv on first use).
set -euo pipefail
cd "$(dirname "$0")"

cargo test --locked

if [ ! -x .venv/bin/pytest ] || ! cmp -s tests/chart/requirements.txt .venv/requirements.txt; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check -r tests/chart/requirements.txt
  cp tests/chart/requirements.txt .venv/requirements.txt
fi
.venv/bin/pytest -q tests/chart
