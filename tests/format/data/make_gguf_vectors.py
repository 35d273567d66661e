"""Cross-check vectors for the GGML block types, written by an independent implementation: the numpy quantizers
of the PyPI package `gguf` (gguf-py, module gguf.quants), which its authors keep bit-exact with ggml's C reference.

Run (from this folder):
    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf numpy
    /tmp/gguf-venv/bin/python make_gguf_vectors.py && /tmp/gguf-venv/bin/python make_turbo_vectors.py

Writes (all little-endian, rows of N = 256 float32 values = 8 GGML blocks = 2 turbo groups):
    gguf_input_f32.bin          ROWS x N float32
    gguf_<type>.bin             the ROWS quantized rows, concatenated (f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)
    gguf_<type>_dequant.bin     gguf's dequantization of the first DEQUANT_ROWS rows, float32 (block types only)

Rows: general data (Gaussian at many scales, outlier channels, a negative-max block, a constant block, a ramp, a
quarter grid), then blocks built so that a code lands exactly on a rounding boundary after scaling (one row per
type), then blocks picked from many random candidates because their bytes change when the arithmetic deviates
slightly from ggml's (a reciprocal instead of a division for d, 1/d one ulp off, a fused multiply-add): these pin
the exact operation order, which random blocks almost never do.

gguf-py and ggml's C code (built for baseline x86-64) agree on every finite block except blocks whose extreme
value is a signed zero (C keeps max = +0.0f and takes the first zero as min; numpy takes other zeros), so no block
here holds zeros of both signs. They disagree on NaN/Inf (numpy's max/min propagate NaN; C's comparisons skip it),
which tests/format/nonfinite_test.cpp covers from ggml's C rules instead.
"""
import pathlib

import numpy as np
import gguf.quants as quants
from gguf import GGMLQuantizationType as T

HERE = pathlib.Path(__file__).parent
N = 256
BLOCKS_PER_ROW = N // 32
GENERAL_ROWS = 6
DEQUANT_ROWS = 8
SENSITIVE_ROWS_PER_TYPE = 5
TYPES = {"f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0,
         "q5_1": T.Q5_1}
BLOCK_TYPES = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]
f32 = np.float32
rng = np.random.default_rng(20261122)


def general_rows():
    scales = np.array([1e-3, 0.02, 1.0, 7.5, 100.0, 3000.0], dtype=f32)
    x = rng.standard_normal((GENERAL_ROWS, N)).astype(f32) * scales[rng.integers(0, len(scales), (GENERAL_ROWS, 1))]
    x[::3, ::37] *= 40.0                                 # outlier channels, as real keys have
    x[1] = np.round(x[1] * 4.0) / 4.0 + 0.125            # a quarter grid (no zeros)
    x[2, 0:32] = -np.abs(x[2, 0:32]) - 0.01
    x[2, 7] = -50.0                                      # a block whose largest magnitude is negative
    x[3, 32:64] = 1.0                                    # a constant block (max == min)
    x[4, 64:96] = np.linspace(-1, 1, 32)                 # a ramp, symmetric: +-1 tie for the signed max
    x[5, 96:128] = np.linspace(-2, 1, 32)
    return x.astype(f32)


def tie_block(kind):
    """A block where every non-extreme value sits exactly on a rounding boundary after scaling."""
    s = f32(2.0) ** int(rng.integers(-12, 8))            # a power of two: d and 1/d are exact
    if kind == "q8_0":                                   # d = s: x/d = k + 1/2, roundf goes away from zero
        x = (rng.integers(-126, 126, 32) + 0.5) * s
        x[rng.integers(32)] = 127 * s * rng.choice([-1, 1])
    elif kind in ("q4_0", "q5_0"):                       # max = -+8s (-+16s): x/d + 8.5 (16.5) an integer
        half = 8 if kind == "q4_0" else 16
        sign = rng.choice([-1, 1])                       # sign of the max; d = -max/half has the other sign
        x = (rng.integers(1, 2 * half, 32) - half - 0.5) * (-sign) * s
        x[rng.integers(32)] = sign * half * s
    else:                                                # max - min = 15s (31s): (x - min)/d + 0.5 an integer
        steps = 15 if kind == "q4_1" else 31
        lo = int(rng.integers(-40, 20))
        x = (lo + rng.integers(1, steps, 32) - 0.5) * s
        x[0], x[31] = lo * s, (lo + steps) * s
        if lo == 0:
            x[0] = (lo + 0.25) * s                       # no zero: keep the min off the signed-zero case
            x[31] = (lo + 0.25 + steps) * s
    return x.astype(f32)


def ggml_codes(kind, x, variant):
    """Scale (as fp16 bits) and codes of each block (row of x), in float32 as ggml computes them, or with one
    plausible deviation: 'd_recip' (d = range * (1/k) instead of range / k), 'id_up'/'id_down' (1/d one ulp off),
    'fma' (the multiply and the add rounded once, as a compiler may contract them)."""
    if kind == "q8_0":
        rng_ = np.abs(x).max(axis=1, keepdims=True)
        k, offset = f32(127), None
    elif kind in ("q4_0", "q5_0"):
        rng_ = np.take_along_axis(x, np.abs(x).argmax(axis=1, keepdims=True), axis=1)
        k, offset = f32(-8 if kind == "q4_0" else -16), f32(8.5 if kind == "q4_0" else 16.5)
    else:
        mn = x.min(axis=1, keepdims=True)
        rng_ = x.max(axis=1, keepdims=True) - mn
        k, offset = f32(15 if kind == "q4_1" else 31), f32(0.5)
    d = rng_ * (f32(1) / k) if variant == "d_recip" else rng_ / k
    idv = f32(1) / d
    if variant == "id_up":
        idv = np.nextafter(idv, f32(np.inf))
    if variant == "id_down":
        idv = np.nextafter(idv, f32(-np.inf))
    base = x - mn if kind in ("q4_1", "q5_1") else x
    if offset is None:
        v = base * idv
        codes = np.sign(v) * np.floor(np.abs(v) + f32(0.5))          # roundf
    else:
        if variant == "fma":
            v = (base.astype(np.float64) * idv + offset).astype(f32)  # exact product, one rounding
        else:
            v = base * idv + offset
        codes = np.minimum(np.trunc(v), 15 if kind in ("q4_0", "q4_1") else 31)
    return d.astype(np.float16).view(np.uint16)[:, 0], codes


def sensitive_blocks(kind, count):
    """Random blocks whose bytes change under one of ggml_codes' deviations: the blocks that pin the arithmetic."""
    picked = []
    variants = ["d_recip", "id_up", "id_down"] + ([] if kind == "q8_0" else ["fma"])
    while sum(len(p) for p in picked) < count:
        cand = (rng.standard_normal((100000, 32)) * (f32(2.0) ** rng.integers(-10, 8, (100000, 1)))).astype(f32)
        cand[:, :4] *= rng.choice([1, 1, 1, 30], size=(100000, 1)).astype(f32)  # some blocks with an outlier
        d0, c0 = ggml_codes(kind, cand, "exact")
        for variant in variants:                          # take an equal share for each deviation
            d1, c1 = ggml_codes(kind, cand, variant)
            hit = np.nonzero((d0 != d1) | np.any(c0 != c1, axis=1))[0]
            picked.append(cand[hit[: count // len(variants) + 1]])
    return np.concatenate(picked)[:count]


rows = [general_rows()]
for kind in BLOCK_TYPES:
    rows.append(np.concatenate([tie_block(kind) for _ in range(BLOCKS_PER_ROW)])[None, :])
for kind in BLOCK_TYPES:
    rows.append(sensitive_blocks(kind, SENSITIVE_ROWS_PER_TYPE * BLOCKS_PER_ROW).reshape(SENSITIVE_ROWS_PER_TYPE, N))
x = np.ascontiguousarray(np.concatenate(rows).astype(f32))
assert np.all(np.isfinite(x)) and not np.any(x == 0)

(HERE / "gguf_input_f32.bin").write_bytes(x.tobytes())
for name, qtype in TYPES.items():
    data = quants.quantize(x, qtype)
    (HERE / f"gguf_{name}.bin").write_bytes(data.tobytes())
    if name in BLOCK_TYPES:
        deq = quants.dequantize(data[:DEQUANT_ROWS], qtype).astype(f32)
        (HERE / f"gguf_{name}_dequant.bin").write_bytes(deq.tobytes())
print(f"wrote {x.shape[0]} rows of {N} values; dequantized rows: {DEQUANT_ROWS}")
