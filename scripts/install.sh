#!/usr/bin/env bash
# Create .venv (if missing) and install mmkeras with every first-party plugin under plugins/,
# editable, with the test tools. Safe to run again: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
args=(-e ".[test,hub,onnx]")
for plugin in plugins/*/; do
  if [ -f "$plugin/pyproject.toml" ]; then
    args+=(-e "$plugin")
  fi
done
.venv/bin/python -m pip install --quiet "${args[@]}"
.venv/bin/mmkeras plugins --strict > /dev/null
echo "mmkeras installed in .venv (activate it with: . .venv/bin/activate)"
