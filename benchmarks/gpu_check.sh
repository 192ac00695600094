#!/usr/bin/env bash
# The GPU check (at most 4 minutes: 90 + 70 + 75 s of timeouts): first the GPU tests, then
# the noising benchmark.
# On a CUDA machine with torch and triton installed (the project's torch lower bound is
# below 2.11), from the repository root:
#     pip install --no-deps -e .          # or rely on PYTHONPATH=src below
#     benchmarks/gpu_check.sh [OUT_DIR]   # tables and JSON land in OUT_DIR (default: gpu-check)
# diffusers is used for the baseline row when it can be imported; without network, install
# a diffusers wheel and its pure-Python dependencies with --no-deps first (docs/gpu.md).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
torch.cuda.get_device_name())" | tee "$out/versions.txt"

status=0
# 1. GPU tests (about a minute: one torch.compile, triton compiles the kernels once).
timeout 90 python -m pytest benchmarks/gpu_tests.py -q -s -p no:cacheprovider \
    2>&1 | tee "$out/gpu_tests.txt" || status=1

# 2. The benchmark: the issue's shapes and dtypes. torch.compile rows only for the first
#    (compiling takes tens of seconds per shape and dtype).
timeout 70 python benchmarks/noising.py --device cuda --shapes 256x3x256x256 \
    --dtypes float32 --repeats 20 --compile --json > "$out/noising_compile.json" || status=1
timeout 75 python benchmarks/noising.py --device cuda --shapes 256x3x256x256 256x4x64x64 \
    --dtypes float32 bfloat16 --repeats 20 --no-compile --json > "$out/noising.json" || status=1
python - "$out" <<'PY' | tee "$out/noising.txt"
import json, sys
from noisejump.bench.noising import NoisingReport, NoisingRow
for name in ("noising_compile.json", "noising.json"):
    try:
        reports = json.load(open(f"{sys.argv[1]}/{name}"))
    except (OSError, ValueError) as error:
        print(f"{name}: not available ({error})")
        continue
    for data in reports:
        report = NoisingReport(tuple(data["shape"]), data["dtype"], data["device"], data["copy_ms"])
        report.rows = [NoisingRow(r["name"], r["ms"], note=r["note"]) for r in data["rows"]]
        print(report.table(), end="\n\n")
PY
exit "$status"
