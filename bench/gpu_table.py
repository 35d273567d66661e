#!/usr/bin/env python3
"""Joins the outputs of bench/cuda_decode_bench (kvflash) and bench/sdpa_compare.py (torch) into the GPU table of
bench/README.md, with the targets of issue 5 checked per row.

Columns: kvflash median us per call (events) and per call inside a 16-call CUDA graph; GB/s of K/V bytes read;
that rate as % of the measured device-to-device copy bandwidth (read + write); torch flash / cuDNN us on the same
shapes (f16 only); llama.cpp's CUDA flash attention from the issue (H100, 131072 keys); the target and whether it
is met.
"""
import argparse
import json

# llama.cpp CUDA FA, one decode token, 32 q heads / 8 KV heads / d 128 / 131072 keys, H100 (issue 5).
LLAMA_CPP_US_131K = {"f16": 411.0, "q8_0": 1319.0, "q4_0": 1379.0, "turbo3": 780.0, "turbo4": 1906.0}


def load_lines(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def target(row, header, torch_row):
    """(description, met) of issue 5's target for this row, or None."""
    copy = header["copy_gbps"]
    gbps = row["kv_bytes"] / (row["us"] * 1e3)
    pct = 100.0 * gbps / copy
    k, n_kv, n_seq = row["k"], row["n_kv"], row["n_seq"]
    standard = row["n_q"] == 1 and row["n_head_q"] == 32 and row["n_head_kv"] == 8 and row["d_k"] == 128
    if not standard or row["k"] != row["v"]:
        return None
    if n_seq == 16 and k == "f16" and n_kv == 32768:
        return ">=95% copy", pct >= 95.0
    if n_seq != 1:
        return None
    if n_kv == 4096:
        floor = header["launch_us"] + row["kv_bytes"] / (copy * 1e3)
        return f"<=1.2x floor ({1.2 * floor:.1f} us)", row["us"] <= 1.2 * floor
    if k == "f16":
        cudnn = torch_row.get("cudnn_us") if torch_row else None
        faster = cudnn is None or row["us"] < cudnn
        return ">=90% copy, < cuDNN", pct >= 90.0 and faster
    extra = k == "q4_0" and n_kv == 131072
    ok = pct >= 85.0 and (not extra or row["us"] <= 60.0)
    return ">=85% copy" + (", <=60 us" if extra else ""), ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kvflash_json")
    ap.add_argument("torch_json", nargs="?")
    args = ap.parse_args()
    lines = load_lines(args.kvflash_json)
    header, rows = lines[0], lines[1:]
    torch_rows = {r["case"]: r for r in load_lines(args.torch_json)} if args.torch_json else {}
    copy = header["copy_gbps"]
    print(f"device: {header['device']}; copy bandwidth {copy:.0f} GB/s (read+write); "
          f"empty-kernel launch {header['launch_us']:.2f} us")
    print()
    print("| case | kvflash us | graph us | GB/s (KV read) | % copy BW | torch flash us | torch cuDNN us "
          "| vs best torch | llama.cpp us (H100) | target | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gbps = r["kv_bytes"] / (r["us"] * 1e3)
        t = torch_rows.get(r["case"])
        flash = t.get("flash_us") if t else None
        cudnn = t.get("cudnn_us") if t else None
        best = min([x for x in (flash, cudnn) if x is not None], default=None)
        vs = ""
        if best:
            ratio = best / r["us"]
            vs = f"{ratio:.2f}x faster" if ratio >= 1.0 else f"{1.0 / ratio:.2f}x slower"
        llama = ""
        if r["n_kv"] == 131072 and r["n_seq"] == 1 and r["k"] == r["v"] and r["n_q"] == 1 and r["d_k"] == 128:
            ref = LLAMA_CPP_US_131K.get(r["k"])
            llama = f"{ref:.0f} ({ref / r['us']:.1f}x)" if ref else ""
        tg = target(r, header, t)
        fmt = lambda x: f"{x:.1f}" if x is not None else "n/a"
        print(f"| {r['case']} | {r['us']:.1f} | {r['graph_us']:.1f} | {gbps:.0f} | {100 * gbps / copy:.1f}% "
              f"| {fmt(flash)} | {fmt(cudnn)} | {vs} | {llama} | {tg[0] if tg else ''} "
              f"| {('yes' if tg[1] else 'NO') if tg else ''} |")


if __name__ == "__main__":
    main()
