#!/usr/bin/env bash
# The trainer's checks and benchmarks on one CUDA GPU, in about 9 minutes, with nothing downloaded: the CUDA and
# QLoRA tests, the one-GPU refusal, and tune_throughput on random Gemma 3 shapes with every side (TRL with and
# without checkpointing, TRL + Liger, gemfuse with and without, and with train.compile on the 1B shape). Every step runs under its own timeout and writes
# its log; the figures go to one file, $OUT/gpu_check.md (or ./gpu_check.md).
#
# On this machine first (the GPU image lacks these; see docs/development.md):
#   bash benchmarks/gpu_check.sh --wheels        # fills .whl/ with gemfuse and the wheels the image lacks
# then on the GPU machine, from the project's root, with .whl/ carried:
#   bash benchmarks/gpu_check.sh                 # add --with-27b for Gemma 3 27B's LoRA and QLoRA runs
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD}"
WHEELS=.whl

if [[ "${1:-}" == "--wheels" ]]; then
  mkdir -p "$WHEELS"
  grep -qx "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
  platform="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
            --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64"
  # shellcheck disable=SC2086
  python3 -m pip download --quiet --no-deps --only-binary=:all: $platform -d "$WHEELS" \
    pydantic pydantic-core annotated-types typing-inspection typing-extensions platformdirs tomlkit pytest-asyncio \
    trl datasets dill multiprocess bitsandbytes liger-kernel \
    "transformers==$(grep -oP '^transformers==\K.*' requirements.lock)" \
    "peft==$(grep -oP '^peft==\K.*' requirements.lock)" \
    "tokenizers==$(grep -oP '^tokenizers==\K.*' requirements.lock)" \
    "huggingface-hub==$(grep -oP '^huggingface-hub==\K.*' requirements.lock)"
  # bitsandbytes ships a library per CUDA and ROCm release (129 MB unpacked): keep CUDA 13's, as the image's torch
  # is, so everything fits in what one call carries (64 MiB)
  slim="$(mktemp -d)"
  .venv/bin/python -m wheel unpack -d "$slim" "$WHEELS"/bitsandbytes-*.whl >/dev/null
  rm -f "$slim"/bitsandbytes-*/bitsandbytes/libbitsandbytes_cuda1[0-2]*.so "$slim"/bitsandbytes-*/bitsandbytes/libbitsandbytes_rocm*.so
  rm "$WHEELS"/bitsandbytes-*.whl
  .venv/bin/python -m wheel pack -d "$WHEELS" "$slim"/bitsandbytes-* >/dev/null
  python3 -m pip wheel --quiet --no-deps . -w "$WHEELS"
  du -sh "$WHEELS"
  exit 0
fi

SITE="$(mktemp -d)/site"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl || exit 1
export PYTHONPATH="$SITE" HF_HUB_OFFLINE=1 GEMFUSE_CACHE_DIR="$(mktemp -d)"
REPORT="$OUT/gpu_check.md"
{
  echo "# gpu_check $(date -u +%F)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} > "$REPORT" 2>&1

step() {  # step NAME SECONDS COMMAND...: run it, keep its log, put its last lines in the report
  local name=$1 limit=$2
  shift 2
  local began=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  { echo; echo "## $name (exit $rc, $((SECONDS - began)) s)"; echo '```'; tail -n 25 "$OUT/$name.log"; echo '```'; } >> "$REPORT"
}

step tests 150 python3 -m pytest -q -p no:cacheprovider tests/test_tune_cuda.py tests/test_tune_qlora.py tests/test_tune_compile.py \
  tests/test_tune_loop.py tests/test_tune_patches.py "tests/test_tune_guard.py::test_the_manifest_reports_the_peak_memory_beside_the_estimate"
SIDES=trl,trl-no-checkpointing,gemfuse,gemfuse-checkpointed,gemfuse-padding-free
python3 -c "import liger_kernel" 2>/dev/null && SIDES="$SIDES,trl-liger"
step bench-270m 120 python3 benchmarks/tune_throughput.py --random-shape 270m --batch 32 \
  --steps 12 --warmup 3 --rounds 1 --sides "$SIDES"
# the goal's shape, with train.compile's sides too (their first steps compile: warm up past them)
step bench-1b 300 python3 benchmarks/tune_throughput.py --random-shape 1b --batch 16 \
  --steps 20 --warmup 8 --rounds 1 --sides "$SIDES,gemfuse-compiled,gemfuse-compiled-checkpointed"
if [[ "${1:-}" == "--with-27b" ]]; then  # about 8 minutes more: LoRA and QLoRA on the 27B shape (80 GB+ card)
  step bench-27b 480 python3 benchmarks/tune_27b.py --shape 27b --steps 4
fi
echo "report: $REPORT"
