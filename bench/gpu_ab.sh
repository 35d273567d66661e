#!/usr/bin/env bash
# A/B of source trees in one GPU call: builds each tree (in parallel), then runs their decode benchmarks
# alternately (A B A B ...), so that a change and its base are timed on the same machine minutes apart, and prints
# one table of the mean of the rounds per tree (bench/ab_table.py). Session 6 used this to tell a branch's
# regressions from the machine's.
#
#   bash bench/gpu_ab.sh TREE... (each a source tree with bench/gpu.sh, e.g. `git archive` of a branch, plus
#   third_party/googletest where the machine has no GoogleTest)
#
# Environment: KVFLASH_AB_ROUNDS (default 2) rounds of the decode benchmark (KVFLASH_AB_DECODE=0 skips it, for a
# change that only touches prefill); KVFLASH_AB_PREFILL=1 also runs each
# tree's prefill benchmark, alternating, as many rounds; KVFLASH_AB_ARGS extra arguments of every decode run (e.g.
# "--only kv=131072"). Builds go to /tmp/kvf-ab-<tree name>; $OUT (./gpu-out elsewhere) ends up holding the table
# (ab_table.md) and one archive of every log and JSON file (ab.tgz).
# Through the device tool: stage the trees under /work/main/.gpu-stage/<name> (the top of bench/gpu.sh shows how) and
#   run(command="bash .gpu-stage/main/bench/gpu_ab.sh .gpu-stage/main .gpu-stage/branch", carry=[".gpu-stage"])
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash bench/gpu_ab.sh TREE TREE [TREE...]" >&2
  exit 2
fi
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
ROUNDS=${KVFLASH_AB_ROUNDS:-2}
JOBS=$(( ${KVFLASH_JOBS:-16} / $# ))
[ "$JOBS" -lt 1 ] && JOBS=1
TABLE=$(cd "$(dirname "$0")" && pwd)/ab_table.py
status=0
names=()
for tree in "$@"; do names+=("$(basename "$tree")"); done

echo "== $(date +%T) building ${names[*]} ($JOBS jobs each)"
for i in "${!names[@]}"; do
  (cd "${@:i+1:1}" && OUT="$OUT/build-${names[i]}" KVFLASH_BUILD_DIR="/tmp/kvf-ab-${names[i]}" KVFLASH_JOBS=$JOBS \
    KVFLASH_GPU_PHASES=build bash bench/gpu.sh >"$OUT/build-${names[i]}.txt" 2>&1) &
done
wait
for n in "${names[@]}"; do
  if grep -q "^FAILED" "$OUT/build-$n.txt" || [ ! -x "/tmp/kvf-ab-$n/kvflash_cuda_bench" ]; then
    echo "FAILED: build of $n (see $OUT/build-$n.txt)"
    status=1
  fi
done
[ "$status" -ne 0 ] && exit 1

for round in $(seq 1 "$ROUNDS"); do
  [ "${KVFLASH_AB_DECODE:-1}" = 0 ] && break
  for n in "${names[@]}"; do
    echo "== $(date +%T) decode benchmark, $n, round $round"
    # shellcheck disable=SC2086  # KVFLASH_AB_ARGS is a list of arguments
    timeout 240 "/tmp/kvf-ab-$n/kvflash_cuda_bench" --json "$OUT/decode_${n}_$round.jsonl" ${KVFLASH_AB_ARGS:-} \
      >"$OUT/decode_${n}_$round.txt" 2>&1 || { echo "FAILED: decode benchmark of $n"; status=1; }
  done
done
if [ "${KVFLASH_AB_PREFILL:-0}" = 1 ]; then
  for round in $(seq 1 "$ROUNDS"); do
    for n in "${names[@]}"; do
      echo "== $(date +%T) prefill benchmark, $n, round $round"
      timeout 180 "/tmp/kvf-ab-$n/kvflash_cuda_prefill_bench" --json "$OUT/prefill_${n}_$round.jsonl" \
        >"$OUT/prefill_${n}_$round.txt" 2>&1 || { echo "FAILED: prefill benchmark of $n"; status=1; }
    done
  done
fi
python3 "$TABLE" "$OUT" "${names[@]}" | tee "$OUT/ab_table.md"
# The device tool brings back a handful of files per call: everything else travels in one archive.
(cd "$OUT" && tar czf ab.tgz --exclude=ab.tgz --exclude=ab_table.md . &&
  find . -mindepth 1 -maxdepth 1 ! -name ab.tgz ! -name ab_table.md -exec rm -rf {} +)
exit $status
