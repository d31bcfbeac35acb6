#!/usr/bin/env bash
# Creates .venv at the project root and installs seqtag with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# setuptools in the environment itself: tests/test_packaging.py builds the wheel without build isolation (no download).
.venv/bin/python -m pip install --quiet "setuptools>=68"
# torch first and pinned: this exact CPU build is what these machines carry; a bare "torch" would download a CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# The optional extras too (serving, Ray), so that the tests exercise them on a fresh machine.
.venv/bin/python -m pip install --quiet -e ".[test,serve,ray,onnx]"
# Chromium renders report.html in tests/test_eval_report.py; where it cannot be installed that test is skipped.
command -v chromium >/dev/null || (apt-get install -y chromium || sudo -n apt-get install -y chromium) >/dev/null 2>&1 || echo "chromium not installed: the report rendering test will be skipped"
