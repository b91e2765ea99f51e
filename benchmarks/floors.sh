#!/usr/bin/env bash
# The declared lower bounds, tested (issue 23): install every runtime dependency of gpt2lib at the lower
# bound pyproject.toml declares for it (">=X" installed as "==X"; benchmarks/floors.py reads them), in a
# fresh virtual environment, then run the fast unit tests and three chapters there.
#
#   bash benchmarks/floors.sh [VENV_DIR]        # default _build/floors-venv; 30-40 min on 2 busy cores
#
# What is pinned: the library's dependencies and the [experiments], [scale] extras and transformers (the
# reference the tests compare with). Test and book tooling (pytest, nbval, jupyter, hypothesis) is whatever pip
# resolves beside them. torch comes from PyTorch's CPU index when it is reachable, else from PyPI (the same
# version, a CUDA build of about 2.5 GB with its libraries, that also runs on a CPU). Output: the installed versions, then the pytest summaries.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-_build/floors-venv}
PY=${PYTHON:-python3}
CHAPTERS=(model input_representation webtext)   # torch, tiktoken, datasketch + trafilatura + Dask

"$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip
"$PY" benchmarks/floors.py > "$VENV/floors.txt"
echo "== floors (from pyproject.toml)"; cat "$VENV/floors.txt"
TORCH=$(grep '^torch==' "$VENV/floors.txt")
"$VPY" -m pip install -q "$TORCH" --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
  || "$VPY" -m pip install -q "$TORCH"
"$VPY" -m pip install -q -c "$VENV/floors.txt" -e ".[test]"
echo "== installed"
"$VPY" -m pip list 2>/dev/null | grep -iE "^(torch|tiktoken|numpy|regex|safetensors|tqdm|matplotlib|huggingface.hub|datasketch|sacrebleu|rouge.score|trafilatura|dask|transformers) "
"$VPY" -m pip check || true

export GPT2LIB_DATA_MIRROR=${GPT2LIB_DATA_MIRROR:-$PWD/../shared/data}
export TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-$PWD/../shared/tiktoken_cache}
echo "== unit tests (fast ones)"
timeout "${FLOORS_TEST_TIMEOUT:-2400}" "$VPY" -m pytest -p no:xdist -p no:cacheprovider -x -q -m "not slow" \
  -o addopts="-ra --strict-markers" tests || status=$?
echo "== chapters: ${CHAPTERS[*]}"
for chapter in "${CHAPTERS[@]}"; do
  timeout 900 "$VPY" book/_tools/execute.py --out "_build/floors-chapters" "book/$chapter.ipynb" || status=$?
done
exit "${status:-0}"
