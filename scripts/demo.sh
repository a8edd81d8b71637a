#!/usr/bin/env bash
# The nordic-langid example end to end, as a user would type it.
set -euo pipefail
cd "$(dirname "$0")/.."
miniml="${VENV:-.venv}/bin/miniml"
echo "== fetch"; $miniml data fetch nordic-langid
echo "== prepare"; $miniml data prepare examples/nordic-langid/data.yaml
