#!/usr/bin/env bash
# The built wheel, installed in a fresh virtual environment with one extra at a time, passes its
# part of the suite: the core alone, then core+keras, core+lightning, core+transformers.
#
#   scripts/check_extras.sh [OUT_DIR]       # default: a new temporary folder; results in OUT_DIR/summary.txt
#
# Each environment gets the wheel (not the source tree: the tests run from a copy of the
# repository without mlflow_green/ and integrations/), the extra, and the test tools. The tests
# whose framework is not installed are left out by conftest.py and listed in each log; any other
# skip fails. Not part of `make test` (about 20-30 minutes on 2 cores: four environments with
# TensorFlow, PyTorch and Transformers); results are recorded in docs/packaging.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$(mktemp -d -t mlflow-green-extras-XXXXXX)}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"   # the CPU build, before anything that depends on torch (as make does)
TEST_TOOLS=(pytest hypothesis "psycopg[binary]" playwright trove-classifiers)
EXTRAS=("${@:2}")
[ ${#EXTRAS[@]} -gt 0 ] || EXTRAS=(core keras lightning transformers)

echo "Building the wheel..."
"$PYTHON" -m pip wheel --quiet --no-deps "$ROOT" -w "$OUT/dist"
WHEEL="$(ls "$OUT"/dist/mlflow_green-*.whl)"

# The tests, from a copy without the package sources (so that the installed wheel is what runs).
TREE="$OUT/tree"
rm -rf "$TREE" && mkdir -p "$TREE"
(cd "$ROOT" && tar --exclude=./mlflow_green --exclude=./integrations --exclude='./.venv*' --exclude=./.git \
    --exclude='*/__pycache__' --exclude=./build --exclude='*.egg-info' -cf - .) | (cd "$TREE" && tar -xf -)
# test_packaging builds the wheel from the sources: it runs in the main suite, not here.
rm -f "$TREE/tests/test_packaging.py"

: > "$OUT/summary.txt"
for extra in "${EXTRAS[@]}"; do
    venv="$OUT/venv-$extra"
    echo "== $extra: $venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    spec="$WHEEL"
    case "$extra" in
        core) ;;
        lightning|transformers)
            "$venv/bin/python" -m pip install --quiet "$TORCH" 2>&1 | grep -v "^WARNING: Location" || true
            spec="$WHEEL[$extra]" ;;
        *) spec="$WHEEL[$extra]" ;;
    esac
    "$venv/bin/python" -m pip install --quiet "$spec" "${TEST_TOOLS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
    installed="$(cd "$TREE" && "$venv/bin/python" -c 'import mlflow_green, mlflow; print(mlflow_green.__file__, "MLflow", mlflow.__version__)')"
    echo "   $installed"
    set +e
    (cd "$TREE" && "$venv/bin/python" -m pytest -p no:cacheprovider -q -m "not slow" tests) > "$OUT/$extra.log" 2>&1
    status=$?
    set -e
    result="$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$OUT/$extra.log" | tail -1)"
    left_out="$(grep -c '' <(grep -o 'Left out here.*' "$OUT/$extra.log" | tr ',' '\n') || true)"
    echo "$extra: exit $status; $result; modules left out (framework not installed): $left_out" | tee -a "$OUT/summary.txt"
done
echo "Logs and summary in $OUT"
! grep -q "exit [1-9]" "$OUT/summary.txt"
