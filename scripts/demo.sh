#!/usr/bin/env bash
# The nordic-langid example end to end, as a user would type it:
# fetch → prepare → train (tracked in MLflow, registered) → evaluate → promote → serve.
set -euo pipefail
cd "$(dirname "$0")/.."
miniml="${VENV:-.venv}/bin/miniml"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/6 fetch the catalog files (sha256-verified, cached)"
$miniml data fetch nordic-langid
$miniml data fetch nordic-langid-extra   # news, everyday sentences, social media, speech

step "2/6 prepare the dataset (immutable, content-addressed)"
$miniml data prepare examples/nordic-langid/data.yaml

step "3/6 train (tracked in MLflow, registered in the model registry)"
$miniml train examples/nordic-langid/train.yaml | tee "$log"
version=$(sed -n 's/^trained nordic-langid: version \([0-9]*\).*/\1/p' "$log")
[ -n "$version" ] || { echo "error: training did not register a version" >&2; exit 1; }

step "4/6 evaluate version $version on the test split"
$miniml evaluate "models:/nordic-langid/$version" nordic-langid --split test --out "${MINIML_HOME:-$HOME/.miniml}/reports/nordic-langid-v$version" | tee "$log"
macro_f1=$(sed -n 's/^ *"macro_f1": \([0-9.]*\).*/\1/p' "$log")

step "5/6 promote version $version to champion if it beats the current one"
$miniml models promote nordic-langid "$version" || echo "(kept the current champion)"
$miniml models list

echo
echo "macro-F1 of version $version on the test split: $macro_f1"
echo "report:      ${MINIML_HOME:-$HOME/.miniml}/reports/nordic-langid-v$version/report.md"
echo "MLflow UI:   $miniml ui   (then open http://127.0.0.1:5000)"

step "6/6 serve the champion (Ctrl-C to stop; Swagger UI at http://127.0.0.1:8000/docs)"
exec $miniml serve --config examples/nordic-langid/serve.yaml --demo-key
