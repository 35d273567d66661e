#!/usr/bin/env python3
"""Where a kernel spends its time, from the SASS page of Nsight Compute's source view.

    python3 bench/sass_hotspots.py source_1.csv [--top 40] [--unit N]

Input: `ncu -i REPORT --page source --csv --print-source sass` (bench/gpu.sh's sourceprofile phase writes one per
profiled kernel). Prints the instructions with the most warp-stall samples, then the executed warp-instructions and
the stall samples per opcode, so that a change can be aimed at what the kernel actually executes rather than at the
static SASS (whose branches are not all taken). Last, the instructions grouped by how often each ran: a group that
ran N times is one code path run N times (a loop body, a prologue, a rarely taken branch), so the groups split the
kernel's work into its loop levels; `--unit N` also divides each group's executed instructions by N (e.g. the
number of warp-tiles, to read instructions per tile).

The column names differ between Nsight Compute versions; the script finds them by substring and lists the columns
it saw when one is missing.
"""
import argparse
import collections
import csv
import re
import sys


def find_column(header, *needles):
    for i, name in enumerate(header):
        low = name.lower()
        if all(n in low for n in needles):
            return i
    return None


def number(text):
    text = text.replace(",", "").strip()
    try:
        return float(text)
    except ValueError:
        return 0.0


def opcode(sass):
    # "@!P0 LDS.U16 R1, [R2]" -> "LDS"
    words = re.sub(r"^@!?U?P\w+\s+", "", sass.strip()).split()
    return words[0].split(".")[0] if words else "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv_file")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--unit", type=float, default=0.0,
                        help="divide each execution-count group's instructions by this (e.g. warp-tiles)")
    args = parser.parse_args()

    with open(args.csv_file, newline="") as f:
        rows = list(csv.reader(f))
    start = next((i for i, r in enumerate(rows) if any("Source" in c for c in r)), None)
    if start is None:
        sys.exit(f"{args.csv_file}: no header row with a 'Source' column")
    header, body = rows[start], [r for r in rows[start + 1:] if len(r) == len(rows[start])]
    source = find_column(header, "source")
    samples = find_column(header, "stall sampling", "all")
    if samples is None:
        samples = find_column(header, "stall sampling")
    executed = find_column(header, "instructions executed")
    if source is None or samples is None or executed is None:
        sys.exit(f"{args.csv_file}: columns not found (source {source}, samples {samples}, executed {executed}); "
                 f"the file has: {header}")

    total_samples = sum(number(r[samples]) for r in body) or 1.0
    total_executed = sum(number(r[executed]) for r in body) or 1.0
    print(f"{args.csv_file}: {len(body)} SASS lines, {total_samples:.0f} stall samples, "
          f"{total_executed:.0f} warp-instructions executed")

    print(f"\ntop {args.top} instructions by stall samples (share of samples, warp-instructions executed):")
    for line, r in sorted(enumerate(body), key=lambda x: -number(x[1][samples]))[:args.top]:
        print(f"  {100 * number(r[samples]) / total_samples:5.1f}%  {number(r[executed]):12.0f}  "
              f"#{line:<5d} {r[source].strip()}")

    by_op_exec = collections.Counter()
    by_op_samples = collections.Counter()
    for r in body:
        op = opcode(r[source])
        by_op_exec[op] += number(r[executed])
        by_op_samples[op] += number(r[samples])
    print("\nper opcode: % of executed warp-instructions, % of stall samples")
    for op, n in by_op_exec.most_common(30):
        print(f"  {op:12s} {100 * n / total_executed:5.1f}%  {100 * by_op_samples[op] / total_samples:5.1f}%")

    groups = {}  # times run -> [SASS lines, executed, samples, first line, last line]
    for line, r in enumerate(body):
        n = number(r[executed])
        if n <= 0:
            continue
        g = groups.setdefault(n, [0, 0.0, 0.0, line, line])
        g[0] += 1
        g[1] += n
        g[2] += number(r[samples])
        g[4] = line
    unit = f", per unit of {args.unit:g}" if args.unit > 0 else ""
    print(f"\nby times run: SASS lines, % of executed, % of stall samples, first-last line{unit}")
    for n, (lines, ex, smp, first, last) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:args.top]:
        per = f"  {ex / args.unit:8.1f}" if args.unit > 0 else ""
        print(f"  {n:12.0f}  {lines:5d}  {100 * ex / total_executed:5.1f}%  {100 * smp / total_samples:5.1f}%  "
              f"#{first}-#{last}{per}")


if __name__ == "__main__":
    main()
