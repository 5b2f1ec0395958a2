#!/usr/bin/env bash
# Every test of the project: the Rust tests (cargo test) and the Helm chart, manifest and alert tests
# (pytest, with Helm's engine from helm-python-sdk and the Kubernetes schemas of kubernetes-validate,
# installed from PyPI into .venv on first use, and promtool from Debian's prometheus package), and the
# release's checks (tests/release: actionlint, hadolint, the versions, the krew manifest).
set -euo pipefail
cd "$(dirname "$0")"

cargo test --locked

if [ ! -x .venv/bin/pytest ] || ! cmp -s tests/chart/requirements.txt .venv/requirements.txt; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check -r tests/chart/requirements.txt
  cp tests/chart/requirements.txt .venv/requirements.txt
fi
# The alert rules' tests need promtool, from Debian's prometheus package.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    install_promtool() {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
    }
    install_promtool || { apt-get update -q >/dev/null && install_promtool; }
  else
    echo "promtool is missing: install Debian's prometheus package (sudo apt-get install prometheus)" >&2
    exit 1
  fi
fi
.venv/bin/pytest -q tests/chart tests/release
