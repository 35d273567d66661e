#!/usr/bin/env python3
"""The table of bench/gpu_ab.sh: per decode case, the mean over rounds of each tree's median µs, and each tree's
ratio to the first (the base).

    python3 bench/ab_table.py OUT_DIR NAME [NAME...]

reads OUT_DIR/decode_<NAME>_<round>.jsonl (bench/cuda_decode_bench.cu --json: one header object with copy_gbps, then
one object per case) and prints a Markdown table on stdout; where OUT_DIR/prefill_<NAME>_<round>.jsonl exist
(bench/cuda_prefill_bench.cu --json), a second table of the mean TFLOP/s per prefill case and row.
"""
import glob
import json
import os
import sys


def read_rounds(out_dir, name):
    """{case: [us of each round]}, {case: splits}, [copy GB/s of each round]."""
    times, splits, copy = {}, {}, []
    for path in sorted(glob.glob(os.path.join(out_dir, f"decode_{name}_*.jsonl"))):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if "case" not in row:
                    copy.append(row.get("copy_gbps", 0.0))
                    continue
                times.setdefault(row["case"], []).append(row["us"])
                splits[row["case"]] = row["splits"]
    return times, splits, copy


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out_dir, names = argv[1], argv[2:]
    runs = {name: read_rounds(out_dir, name) for name in names}
    base_times = runs[names[0]][0]
    if not base_times:
        # A prefill-only A/B (KVFLASH_AB_DECODE=0) has no decode rounds: its table is the prefill one alone.
        return 0 if prefill_table(out_dir, names) else 1
    for name in names:
        copy = runs[name][2]
        print(f"- {name}: {len(copy)} round(s), copy bandwidth "
              + ", ".join(f"{c:.0f}" for c in copy) + " GB/s")
    print()
    header = "| case | " + " | ".join(f"{n} µs (splits)" for n in names) + " | " + \
        " | ".join(f"{n} / {names[0]}" for n in names[1:]) + " |"
    print(header)
    print("|---|" + "---:|" * (2 * len(names) - 1))
    for case, base in base_times.items():
        cells, ratios = [], []
        base_mean = sum(base) / len(base)
        for name in names:
            times, splits, _ = runs[name]
            if case not in times:
                cells.append("n/a")
                if name != names[0]:
                    ratios.append("n/a")
                continue
            mean = sum(times[case]) / len(times[case])
            cells.append(f"{mean:.1f} ({splits[case]})")
            if name != names[0]:
                ratios.append(f"{mean / base_mean:.3f}")
        print(f"| {case} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    prefill_table(out_dir, names)
    return 0


def prefill_table(out_dir, names):
    """The prefill rounds of each tree: mean TFLOP/s per (type, depth, route) and the ratio to the first tree."""
    runs = {}
    for name in names:
        rows = {}
        for path in sorted(glob.glob(os.path.join(out_dir, f"prefill_{name}_*.jsonl"))):
            with open(path) as f:
                for line in f:
                    row = json.loads(line)
                    if "tflops" in row:
                        rows.setdefault((row["type"], row["depth"], row["route"]), []).append(row["tflops"])
        runs[name] = rows
    if not runs[names[0]]:
        return False
    print()
    print("| prefill case | row | " + " | ".join(f"{n} TFLOP/s" for n in names) + " | " +
          " | ".join(f"{n} / {names[0]}" for n in names[1:]) + " |")
    print("|---|---|" + "---:|" * (2 * len(names) - 1))
    for key, base in runs[names[0]].items():
        base_mean = sum(base) / len(base)
        means = [sum(runs[n][key]) / len(runs[n][key]) if key in runs[n] else None for n in names]
        cells = [f"{m:.1f}" if m is not None else "n/a" for m in means]
        ratios = [f"{m / base_mean:.2f}" if m is not None and base_mean > 0 else "n/a" for m in means[1:]]
        print(f"| {key[0]} {key[1]} | {key[2]} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv))
