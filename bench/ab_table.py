#!/usr/bin/env python3
"""The table of bench/gpu_ab.sh: per decode case, the mean over rounds of each tree's median µs, and each tree's
ratio to the first (the base).

    python3 bench/ab_table.py OUT_DIR NAME [NAME...]

reads OUT_DIR/decode_<NAME>_<round>.jsonl (bench/cuda_decode_bench.cu --json: one header object with copy_gbps, then
one object per case) and prints a Markdown table on stdout.
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
        print(f"no decode_{names[0]}_*.jsonl in {out_dir}", file=sys.stderr)
        return 1
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
