#!/usr/bin/env bash
# The GPU run of the CUDA backend, in one script (one device-machine call):
#   1. build for sm_90a (+ compute_90a PTX) with 16 jobs: the library, kvflash_gpu_tests, the decode benchmark;
#   2. kvflash_gpu_tests (every CUDA path against the reference oracle);
#   3. compute-sanitizer memcheck and racecheck on a small sweep of those tests;
#   4. the decode benchmark, torch SDPA (flash and cuDNN) on the same shapes, the copy bandwidth, one table.
#   (prefill) the prefill benchmark (TFLOP/s) and torch SDPA flash / cuDNN on the same f16 shapes.
#   (cli) the main job: `kvflash bench --backend cuda` with the issues' command (-p 512 -d 0,32768,131072 -ctk
#   f16,q8_0,q4_0,turbo3) into cli_bench.md and cli_bench.json, then each variant KVFLASH_CLI_VARIANTS names
#   (pages16: --page-rows 16; pages64k: --page-rows 65536, one page table entry per 64K keys; launch: --timing
#   launch; depths 32768,131072 each) into cli_<variant>.md.
#   (clitests) builds kvflash_tests and runs its BenchCli tests (the CUDA smoke run of the CLI among them).
#   (standalone) bench/cuda_decode_bench.cu (contiguous caches) with --only PATTERN for each pattern of
#   KVFLASH_STANDALONE_ONLY (default "kv=32768 kv=131072"; "causal:PATTERN" adds --causal, the problem options
#   kvflash bench sets), and bench/cuda_prefill_bench.cu --only for each of KVFLASH_STANDALONE_PREFILL, for
#   comparison with the cli rows.
# 5. (profile) Nsight Compute counters of the decode kernel on the 131K cases (KVFLASH_PROFILE_CASES, comma-separated
#    --only patterns, picks others).
# Logs and JSON go to $OUT (the device tool's folder; ./gpu-out elsewhere). KVFLASH_GPU_PHASES picks phases
# ("build test sanitize bench prefill cli profile" by default; "clitests", "standalone" and "sourceprofile" on
# request). KVFLASH_PACK=1 leaves one archive in $OUT, gpu-out.tgz, holding everything (the device tool returns
# only a few files per call). Needs nvcc, cmake, python3 with torch; GoogleTest from the system or
# from third_party/googletest (copied next to the tree when the machine has none).
#
# From a checkout: bash bench/gpu.sh. Through the device tool (it sends /work/main, not a worktree):
#   rm -rf /work/main/.gpu-stage && mkdir -p /work/main/.gpu-stage && git -C <worktree> archive HEAD |
#     tar -x -C /work/main/.gpu-stage && cp -r /usr/src/googletest /work/main/.gpu-stage/third_party/
#   run(command="cd .gpu-stage && bash bench/gpu.sh", carry=[".gpu-stage"])
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
BUILD=${KVFLASH_BUILD_DIR:-build-gpu}
JOBS=${KVFLASH_JOBS:-16}
PHASES=${KVFLASH_GPU_PHASES:-build test sanitize bench prefill cli profile}
# Tests small enough to run under the sanitizers in a minute or two, covering the decode kernel (splits, layouts,
# pages, empty rows), the generic kernel, both prefill kernels, split prefill with the combine, page runs and the
# turbo fragment loaders.
SANITIZER_FILTER=${KVFLASH_SANITIZER_FILTER:-"CudaDecode.ForcedSplitCountsAgree:CudaDecode.EmptyCachesAndRowsThatSeeNoKey:CudaDecode.GroupSizesFromOneToManyQueryChunks:CudaDecode.StridedAndPagedLayoutsWithPerSequenceLengths:CudaGeneric.SeventeenRowsLeaveTheDecodeKernelForTheGenericOne:CudaGeneric.ForcedSplitsAndStridedLayouts:CudaPrefill.RowsThatSeeNoKeyOutputZeros:CudaPrefill.ManyKeyTilesThroughTheFragmentPipeline:CudaDecode.CausalMultiRowStepsMaskOnlyTheLastKeysOfEachSequence:CudaPrefillWgmma.ManyKeyTilesThroughTheStageRing:CudaPrefillWgmma.RowsThatSeeNoKeyOutputZeros:CudaPrefill.SplitKeysMergeThroughTheCombine:CudaKvPipeline.WideDecodeAndPrefillOverPagesSmallerThanATile:Types/TurboFragments.*"}
status=0

log() { echo "== $(date +%T) $*"; }
phase() { [[ " $PHASES " == *" $1 "* ]]; }
fail() {
  echo "FAILED: $*"
  status=1
}

log "environment"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  nvcc --version | tail -2
  cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  nproc
} 2>&1 | tee "$OUT/build.log"

if phase build; then
  log "build ($JOBS jobs, sm_90a)"
  prefix=()
  # compgen, not ls: ls fails when any one of the patterns is missing, and a machine with GTest under /usr/lib but
  # none under /usr/local (session 9's) would then build the copy too.
  if ! compgen -G '/usr/lib/*/cmake/GTest/GTestConfig.cmake' >/dev/null &&
    ! compgen -G '/usr/local/lib*/cmake/GTest/GTestConfig.cmake' >/dev/null && [ -d third_party/googletest ]; then
    log "building GoogleTest from third_party/googletest"
    # Per tree, not /tmp: a warm machine keeps /tmp between calls, and another tree's CMake cache there fails the
    # configure ("does not match the source used to generate cache").
    case "$BUILD" in
      /*) GTEST_DIR="$BUILD-gtest" ;;
      *) GTEST_DIR="$PWD/$BUILD-gtest" ;;
    esac
    cmake -S third_party/googletest -B "$GTEST_DIR/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
      -DCMAKE_INSTALL_PREFIX="$GTEST_DIR" >>"$OUT/build.log" 2>&1 &&
      cmake --build "$GTEST_DIR/build" -j "$JOBS" --target install >>"$OUT/build.log" 2>&1 ||
      fail "GoogleTest build (see build.log)"
    prefix=(-DCMAKE_PREFIX_PATH="$GTEST_DIR")
  fi
  start=$(date +%s)
  if cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKVFLASH_CUDA=ON -DKVFLASH_CUDA_ARCHS=90a "${prefix[@]}" \
    >>"$OUT/build.log" 2>&1 &&
    cmake --build "$BUILD" -j "$JOBS" --target kvflash_static kvflash_gpu_tests kvflash_cli >>"$OUT/build.log" 2>&1; then
    nvcc -std=c++20 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Iinclude -Isrc \
      -I"$BUILD/include" bench/cuda_decode_bench.cu "$BUILD/src/libkvflash.a" -o "$BUILD/kvflash_cuda_bench" \
      >>"$OUT/build.log" 2>&1 || fail "benchmark build (see build.log)"
    nvcc -std=c++20 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Iinclude -Isrc \
      -I"$BUILD/include" bench/cuda_prefill_bench.cu "$BUILD/src/libkvflash.a" -o "$BUILD/kvflash_cuda_prefill_bench" \
      >>"$OUT/build.log" 2>&1 || fail "prefill benchmark build (see build.log)"
  else
    tail -40 "$OUT/build.log"
    if [ -x prebuilt/kvflash_gpu_tests ]; then
      # Binaries built on the staging machine (same architecture and toolkit), so the tests and the benchmark
      # still run; the failed build is reported.
      fail "build (see build.log); running the prebuilt binaries"
      mkdir -p "$BUILD/tests" && cp prebuilt/kvflash_gpu_tests "$BUILD/tests/" && cp prebuilt/kvflash_cuda_bench "$BUILD/"
    else
      fail "build (see build.log)"
    fi
  fi
  echo "build seconds: $(($(date +%s) - start))" | tee -a "$OUT/build.log"
  grep -E "warning|error" "$OUT/build.log" | head -20
fi

if phase test; then
  log "kvflash_gpu_tests"
  timeout 300 "$BUILD/tests/kvflash_gpu_tests" --gtest_color=no --gtest_filter="${KVFLASH_GPU_TEST_FILTER:-*}" \
    >"$OUT/gpu_tests.log" 2>&1 || fail "kvflash_gpu_tests"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|Failure|nmse|route sweep" "$OUT/gpu_tests.log" | head -80
fi

if phase sanitize; then
  for tool in memcheck racecheck; do
    log "compute-sanitizer $tool"
    timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 3 --print-limit 20 \
      "$BUILD/tests/kvflash_gpu_tests" --gtest_color=no --gtest_filter="$SANITIZER_FILTER" \
      >"$OUT/sanitizer.tmp" 2>&1 || fail "compute-sanitizer $tool"
    cat "$OUT/sanitizer.tmp" >>"$OUT/sanitizer.log"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Hazard|Invalid|^\[  (PASSED|FAILED) " "$OUT/sanitizer.tmp" | head -20
    rm -f "$OUT/sanitizer.tmp"
  done
fi

if phase bench; then
  log "decode benchmark"
  timeout 240 "$BUILD/kvflash_cuda_bench" --json "$OUT/kvflash_bench.jsonl" 2>&1 ||
    fail "kvflash benchmark"
  log "torch SDPA"
  PYTHONUNBUFFERED=1 timeout 180 python3 bench/sdpa_compare.py --json "$OUT/torch_sdpa.jsonl" 2>&1 |
    grep -v -E "UserWarning|F.scaled_dot_product_attention" || fail "torch SDPA comparison"
  log "table"
  python3 bench/gpu_table.py "$OUT/kvflash_bench.jsonl" "$OUT/torch_sdpa.jsonl" | tee "$OUT/table.md"
fi

if phase prefill; then
  log "prefill benchmark"
  timeout 180 "$BUILD/kvflash_cuda_prefill_bench" --json "$OUT/kvflash_prefill.jsonl" 2>&1 || fail "prefill benchmark"
  log "torch SDPA prefill"
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/sdpa_compare.py --prefill --json "$OUT/torch_sdpa_prefill.jsonl" 2>&1 |
    grep -v -E "UserWarning|F.scaled_dot_product_attention" || fail "torch SDPA prefill"
fi

if phase cli; then
  ISSUE_CMD=(bench -p 512 -d 0,32768,131072 -ctk f16,q8_0,q4_0,turbo3 --backend cuda)
  log "kvflash ${ISSUE_CMD[*]}"
  timeout 300 "$BUILD/bin/kvflash" "${ISSUE_CMD[@]}" -o json >"$OUT/cli_bench.json" 2>"$OUT/cli_bench.err" ||
    { tail -3 "$OUT/cli_bench.err"; fail "kvflash bench (json)"; }
  timeout 300 "$BUILD/bin/kvflash" "${ISSUE_CMD[@]}" >"$OUT/cli_bench.md" 2>>"$OUT/cli_bench.err" ||
    { tail -3 "$OUT/cli_bench.err"; fail "kvflash bench (md)"; }
  cat "$OUT/cli_bench.md"
  for variant in ${KVFLASH_CLI_VARIANTS:-}; do
    case "$variant" in
      pages16) extra=(--page-rows 16) ;;
      pages64k) extra=(--page-rows 65536) ;;
      launch) extra=(--timing launch) ;;
      *) fail "unknown KVFLASH_CLI_VARIANTS entry '$variant'"; continue ;;
    esac
    log "kvflash bench variant $variant: ${extra[*]}"
    timeout 240 "$BUILD/bin/kvflash" bench -p 512 -d 32768,131072 -ctk f16,q8_0,q4_0,turbo3 --backend cuda \
      "${extra[@]}" >"$OUT/cli_$variant.md" 2>>"$OUT/cli_bench.err" || fail "kvflash bench variant $variant"
    grep -E "^\| cuda" "$OUT/cli_$variant.md"
  done
fi

if phase clitests; then
  # The CLI's own tests of the device path (tests/cli; kvflash_tests is not part of the build phase).
  log "kvflash_tests --gtest_filter=BenchCli.*"
  cmake --build "$BUILD" -j "$JOBS" --target kvflash_tests >>"$OUT/build.log" 2>&1 || fail "kvflash_tests build"
  timeout 240 "$BUILD/tests/kvflash_tests" --gtest_color=no --gtest_filter='BenchCli.*' >"$OUT/cli_tests.log" 2>&1 ||
    fail "BenchCli tests"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|Failure" "$OUT/cli_tests.log" | head -20
fi

if phase standalone; then
  for pattern in ${KVFLASH_STANDALONE_ONLY:-kv=32768 kv=131072}; do
    flags=()
    if [[ "$pattern" == causal:* ]]; then
      pattern=${pattern#causal:}
      flags=(--causal)
    fi
    log "decode benchmark --only $pattern ${flags[*]}"
    timeout 120 "$BUILD/kvflash_cuda_bench" --only "$pattern" "${flags[@]}" 2>&1 ||
      fail "kvflash_cuda_bench --only $pattern ${flags[*]}"
  done
  for pattern in ${KVFLASH_STANDALONE_PREFILL:-}; do
    log "prefill benchmark --only $pattern"
    timeout 120 "$BUILD/kvflash_cuda_prefill_bench" --only "$pattern" 2>&1 ||
      fail "kvflash_cuda_prefill_bench --only $pattern"
  done
fi

if phase profile; then
  # Hardware counters of the decode kernel on the 131K cases (clocks left alone, as the machine's notes ask).
  IFS=, read -r -a cases <<<"${KVFLASH_PROFILE_CASES:-q4_0 kv=131072,f16 kv=131072,turbo3 kv=131072}"
  for case in "${cases[@]}"; do
    log "ncu: $case"
    timeout 120 ncu --clock-control none --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
      --section Occupancy -k regex:decode_ -c 1 "$BUILD/kvflash_cuda_bench" --only "$case" --iters 3 \
      >"$OUT/ncu.tmp" 2>&1 || fail "ncu $case"
    { echo "==== $case"; cat "$OUT/ncu.tmp"; } >>"$OUT/ncu.txt"
    grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|Achieved Occupancy|Stall|Registers|Warp Cycles Per Issued" \
      "$OUT/ncu.tmp" | head -24
    rm -f "$OUT/ncu.tmp"
  done
  log "ncu: stall reasons, q4_0 kv=131072"
  stalls=""
  for r in barrier long_scoreboard short_scoreboard mio_throttle wait math_pipe_throttle lg_throttle not_selected \
    dispatch_stall no_instruction branch_resolving membar; do
    stalls="$stalls,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"
  done
  timeout 120 ncu --clock-control none --metrics "smsp__inst_executed.sum,sm__cycles_elapsed.avg${stalls}" \
    -k regex:decode_ -c 1 "$BUILD/kvflash_cuda_bench" --only "q4_0 kv=131072" --iters 3 >"$OUT/ncu.tmp" 2>&1 ||
    fail "ncu stall metrics"
  { echo "==== stalls q4_0"; cat "$OUT/ncu.tmp"; } >>"$OUT/ncu.txt"
  grep -E "stalled|inst_executed|cycles_elapsed" "$OUT/ncu.tmp" | head -20
  rm -f "$OUT/ncu.tmp"
fi

if phase sourceprofile; then
  # Per-instruction counters (stall samples, executed instructions) of one kernel per entry of
  # KVFLASH_SOURCE_PROFILE, comma-separated "prefill|decode:--only pattern:kernel regex", as the SASS page of
  # `ncu --page source --csv` in $OUT/source_<n>.csv (bench/sass_hotspots.py reads them).
  IFS=, read -r -a entries <<<"${KVFLASH_SOURCE_PROFILE:-prefill:q8_0 131072:prefill_wgmma_ws,decode:q4_0 kv=131072:decode_}"
  n=0
  for entry in "${entries[@]}"; do
    IFS=: read -r which pattern kernel <<<"$entry"
    bin="$BUILD/kvflash_cuda_bench"
    [ "$which" = prefill ] && bin="$BUILD/kvflash_cuda_prefill_bench"
    n=$((n + 1))
    log "ncu source counters $n: $which '$pattern' kernel ~ $kernel"
    timeout 150 ncu --clock-control none --section SourceCounters --section WarpStateStats --section SpeedOfLight \
      --import-source no -k "regex:$kernel" -c 1 -o "$OUT/source_$n" -f "$bin" --only "$pattern" --iters 3 \
      >"$OUT/source_$n.log" 2>&1 || fail "ncu source counters $n"
    ncu -i "$OUT/source_$n.ncu-rep" --page source --csv --print-source sass >"$OUT/source_$n.csv" 2>>"$OUT/source_$n.log" ||
      fail "ncu source page $n"
    ncu -i "$OUT/source_$n.ncu-rep" --page details >>"$OUT/source_$n.log" 2>&1
    rm -f "$OUT/source_$n.ncu-rep"
    echo "$which '$pattern' ~ $kernel" >"$OUT/source_$n.what"
    grep -E "Duration|Throughput|Warp Cycles Per Issued" "$OUT/source_$n.log" | head -8
  done
fi

log "done (status $status)"
if [ "${KVFLASH_PACK:-0}" = 1 ]; then
  # The device tool brings back a handful of files per call: everything in one archive, nothing else left in $OUT.
  tar czf /tmp/kvflash-gpu-out.tgz -C "$OUT" . && rm -rf "${OUT:?}"/* && mv /tmp/kvflash-gpu-out.tgz "$OUT/gpu-out.tgz"
fi
exit $status
