#!/usr/bin/env python3
"""torch.nn.functional.scaled_dot_product_attention on the decode shapes of cuda_decode_bench (f16 K/V only: torch
has no quantized cache), with the flash and the cuDNN backends forced in turn.

Same method as the kvflash numbers: fresh random data (never zeros), CUDA events around each call after warm-up,
median of the calls; several input copies rotated when one fits in L2. GQA through enable_gqa=True, so K/V are
read once per KV head as kvflash reads them. Writes one JSON object per line (--json) and prints a table.
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

CASES = [
    # name, n_seq, n_kv, n_q, n_head_q, n_head_kv, d
    ("f16 kv=4096", 1, 4096, 1, 32, 8, 128),
    ("f16 kv=32768", 1, 32768, 1, 32, 8, 128),
    ("f16 kv=131072", 1, 131072, 1, 32, 8, 128),
    ("f16 batch16 kv=32768", 16, 32768, 1, 32, 8, 128),
    ("f16 n_q=4 kv=32768", 1, 32768, 4, 32, 8, 128),
    ("f16 d512 gqa2 kv=32768", 1, 32768, 1, 8, 4, 512),
]
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def time_backend(backend, inputs, warmup=10, iters=50):
    times = []
    with sdpa_kernel([backend]):
        for i in range(warmup):
            q, k, v = inputs[i % len(inputs)]
            F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        torch.cuda.synchronize()
        events = []
        for i in range(iters):
            q, k, v = inputs[i % len(inputs)]
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            stop.record()
            events.append((start, stop))
        torch.cuda.synchronize()
        times = [a.elapsed_time(b) * 1000.0 for a, b in events]
    return statistics.median(times)


PREFILL_DEPTHS = [0, 32768, 131072]  # 512 new rows, 32 query / 8 KV heads, d 128 (cuda_prefill_bench's shapes)


def time_prefill(backend, q, k, v, iters=20):
    """Bottom-right causal: is_causal where square (top-left = bottom-right), torch's causal_lower_right otherwise."""
    from torch.nn.attention.bias import causal_lower_right
    n_q, n_kv = q.shape[2], k.shape[2]
    mask = None if n_q == n_kv else causal_lower_right(n_q, n_kv)
    def call():
        if mask is None:
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    with sdpa_kernel([backend]):
        for _ in range(5):
            call()
        torch.cuda.synchronize()
        events = []
        for _ in range(iters):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            stop.record()
            events.append((start, stop))
        torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) * 1000.0 for a, b in events)


def prefill(out):
    """TFLOP/s = 4 * d * n_head_q * sum_i (n_kv - n_q + i + 1), as cuda_prefill_bench counts."""
    n_q, hq, hkv, d = 512, 32, 8, 128
    print(f"{'prefill depth':26s} {'flash TF/s':>10s} {'cudnn TF/s':>10s}")
    for depth in PREFILL_DEPTHS:
        n_kv = depth + n_q
        flops = 4.0 * d * hq * (n_q * (n_kv - n_q) + n_q * (n_q + 1) / 2)
        gen = torch.Generator(device="cuda").manual_seed(4321)
        q = torch.randn(1, hq, n_q, d, device="cuda", dtype=torch.float16, generator=gen)
        k = torch.randn(1, hkv, n_kv, d, device="cuda", dtype=torch.float16, generator=gen)
        v = torch.randn(1, hkv, n_kv, d, device="cuda", dtype=torch.float16, generator=gen)
        row = {"case": f"prefill f16 depth={depth}", "depth": depth, "n_q": n_q, "flops": flops}
        for label, backend in BACKENDS.items():
            try:
                us = time_prefill(backend, q, k, v)
                row[label + "_us"], row[label + "_tflops"] = us, flops / (us * 1e6)
            except Exception as e:  # a backend that cannot take the shape: reported, not fatal
                row[label + "_us"] = row[label + "_tflops"] = None
                row[label + "_error"] = str(e).splitlines()[0][:200]
        fmt = lambda x: f"{x:10.1f}" if x is not None else f"{'n/a':>10s}"
        print(f"{'depth ' + str(depth):26s} {fmt(row['flash_tflops'])} {fmt(row['cudnn_tflops'])}")
        sys.stdout.flush()
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
        del q, k, v
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write one JSON object per case to this file")
    ap.add_argument("--prefill", action="store_true", help="the prefill shapes (TFLOP/s) instead of decode")
    args = ap.parse_args()
    if args.prefill:
        dev = torch.cuda.get_device_properties(0)
        print(f"torch {torch.__version__}, {dev.name}")
        out = open(args.json, "w") if args.json else None
        prefill(out)
        if out:
            out.close()
        return
    dev = torch.cuda.get_device_properties(0)
    l2 = getattr(dev, "L2_cache_size", 50 << 20)
    print(f"torch {torch.__version__}, {dev.name}")
    out = open(args.json, "w") if args.json else None
    print(f"{'case':26s} {'flash us':>10s} {'cudnn us':>10s}")
    for name, n_seq, n_kv, n_q, hq, hkv, d in CASES:
        kv_bytes = 2 * n_seq * hkv * n_kv * d * 2
        sets = max(1, min(16, (4 * l2) // kv_bytes + 1))
        gen = torch.Generator(device="cuda").manual_seed(1234)
        inputs = []
        for _ in range(sets):
            q = torch.randn(n_seq, hq, n_q, d, device="cuda", dtype=torch.float16, generator=gen)
            k = torch.randn(n_seq, hkv, n_kv, d, device="cuda", dtype=torch.float16, generator=gen)
            v = torch.randn(n_seq, hkv, n_kv, d, device="cuda", dtype=torch.float16, generator=gen)
            inputs.append((q, k, v))
        row = {"case": name, "kv_bytes": kv_bytes}
        for label, backend in BACKENDS.items():
            try:
                row[label + "_us"] = time_backend(backend, inputs)
            except Exception as e:  # a backend that cannot take the shape: reported, not fatal
                row[label + "_us"] = None
                row[label + "_error"] = str(e).splitlines()[0][:200]
        fmt = lambda x: f"{x:10.1f}" if x is not None else f"{'n/a':>10s}"
        print(f"{name:26s} {fmt(row['flash_us'])} {fmt(row['cudnn_us'])}")
        sys.stdout.flush()
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
        del inputs
        torch.cuda.empty_cache()
    if out:
        out.close()


if __name__ == "__main__":
    main()
