#!/usr/bin/env bash
# Every GPU speed measurement of docs/performance.md in one run on one GPU, under 5 minutes.
#
#   benchmarks/gpu_suite.sh OUTDIR [CODEFORMER_CLONE]
#
# Writes OUTDIR/speed.jsonl (the records), OUTDIR/speed.log (progress and tables),
# OUTDIR/speed_tables.md (the docs' tables) and OUTDIR/targets.txt, prints the elapsed time,
# and exits with the targets check's status (1 when a target FAILs).
# The measuring run stops starting compiled runs when they would end past --budget-s
# (they are recorded as skipped) and is interrupted at MEASURE_LIMIT_S; whatever it measured
# is already in speed.jsonl (rewritten atomically after each record).
# ENTED_BENCHMARK_DRY_RUN=1 runs the same commands on CPU with tiny networks (tests/benchmark/test_benchmark_speed.py).
# PYTHON names the interpreter (default: python).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 OUTDIR [CODEFORMER_CLONE]" >&2
    exit 2
fi
outdir=$1
python=${PYTHON:-python}
MEASURE_LIMIT_S=${MEASURE_LIMIT_S:-260}
extra=()
if [[ ${ENTED_BENCHMARK_DRY_RUN:-0} == 1 ]]; then
    extra+=(--dry-run)
fi
if [[ $# -eq 2 ]]; then
    extra+=(--codeformer-repo "$2")
fi
mkdir -p "$outdir"
start=$SECONDS

# 512 px: params, GFLOPs, CPU batch-1 latency (3 repeats), bf16 matmul peak, fp32/fp16/bf16 x
# batch 1/16 eager, the G+D training steps at batch 8 (5 timed), then the compiled runs (inductor),
# bf16 first, as far as the budget allows.
measure_status=0
timeout --signal=INT "$MEASURE_LIMIT_S" "$python" -m ented.cli.benchmark speed \
    --device cuda --size 512 \
    --dtypes fp32 fp16 bf16 --batch-sizes 1 16 --repeats 10 \
    --compile both --compile-backend inductor \
    --cpu-repeats 3 --matmul-n 8192 \
    --train-step --train-batch 8 --train-iters 5 --loss-networks random \
    --budget-s 190 \
    --out "$outdir/speed.jsonl" "${extra[@]}" >"$outdir/speed.log" 2>&1 || measure_status=$?
tail -n 60 "$outdir/speed.log"
if [[ $measure_status -ne 0 ]]; then
    echo "measuring run ended with status $measure_status (124: stopped at ${MEASURE_LIMIT_S} s); see $outdir/speed.log" >&2
fi

targets_status=0
if [[ -s $outdir/speed.jsonl ]]; then
    "$python" -m ented.cli.benchmark speed --table "$outdir/speed.jsonl" >"$outdir/speed_tables.md"
    "$python" -m ented.cli.benchmark speed --targets "$outdir/speed.jsonl" --strict >"$outdir/targets.txt" ||
        targets_status=$?
    cat "$outdir/targets.txt"
else
    echo "no records in $outdir/speed.jsonl" >&2
fi

echo "gpu_suite: $((SECONDS - start)) s; records in $outdir/speed.jsonl"
if [[ $measure_status -ne 0 ]]; then
    exit "$measure_status"
fi
exit "$targets_status"
