"""Cross-check vectors for turbo2/turbo3/turbo4 from a second, independent implementation of TURBOQUANT.md:
numpy float32 arithmetic, in the order the spec gives (sequential sums, the rotation as three explicit steps).
No TurboQuant package exists on PyPI; this is written from the spec alone, not from kvflash.

Run with the venv of make_gguf_vectors.py. Writes (128 values = one group = one block per row):
    turbo_input_f32.bin          GROUPS x 128 float32
    turbo_<type>.bin             every group quantized, concatenated
    turbo_<type>_dequant.bin     the first DEQUANT_GROUPS groups dequantized to the original domain, float32

Groups: Gaussian groups at several scales with outlier channels (what real keys look like), a constant group, one
dominated by a single value; then groups picked from many random candidates because their bytes change when the
arithmetic deviates slightly from the spec's (sums in another order, x / norm instead of x * (1/norm),
norm * (1/rn) instead of norm / rn, thresholds compared in double): these pin the exact operation order.
"""
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).parent
GROUP = 128
GENERAL_GROUPS = 16
SENSITIVE_GROUPS = 32
DEQUANT_GROUPS = 8
f32 = np.float32

S1 = ("-++--+-+--+++++++-+-+--+++-++---" "-++-++-+-++--+-++++-----+-++++-+"
      "--+---+---+---+++--+++--++-++-+-" "-++-+-+-++++-+-++-++-----++-++-+")
S2 = ("++++-++-+---+---++--+-+-+--+-+++" "++---+------+++-+-+++--+------++"
      "+-+----+-+-+--++-+-++-+----+--+-" "+-+++--+-+-++--+-+-++-+-+-----+-")
SIGN1 = np.array([-1 if c == "-" else 1 for c in S1], dtype=f32)
SIGN2 = np.array([-1 if c == "-" else 1 for c in S2], dtype=f32)
assert len(SIGN1) == GROUP and len(SIGN2) == GROUP

CENTROIDS = {
    "turbo2": [-0.133462, -0.039994, 0.039994, 0.133462],
    "turbo3": [-0.190685, -0.117832, -0.065717, -0.021460, 0.021460, 0.065717, 0.117832, 0.190685],
    "turbo4": [-0.173926, -0.117195, -0.089527, -0.068756, -0.051262, -0.035597, -0.020989, -0.006938,
               0.006938, 0.020989, 0.035597, 0.051262, 0.068756, 0.089527, 0.117195, 0.173926],
}
THRESHOLDS = {
    "turbo2": [-0.086728, 0, 0.086728],
    "turbo3": [-0.154259, -0.091775, -0.043589, 0, 0.043589, 0.091775, 0.154259],
    "turbo4": [-0.145560, -0.103361, -0.079142, -0.060009, -0.043430, -0.028293, -0.013963, 0, 0.013963,
               0.028293, 0.043430, 0.060009, 0.079142, 0.103361, 0.145560],
}
SCALE = f32(0.08838834764831845)


def rotate(u, first, second):
    """Per group (row of u): multiply by `first`, unnormalized butterflies (a, b) -> (a + b, a - b) for
    h = 1, 2, ..., 64, multiply by SCALE * `second` computed as one float."""
    u = (u * first).astype(f32)
    h = 1
    while h < GROUP:
        v = u.reshape(u.shape[0], -1, 2, h)              # pairs (j, j + h) inside blocks of 2h
        a, b = v[:, :, 0, :], v[:, :, 1, :]
        u = np.stack([a + b, a - b], axis=2).reshape(u.shape).astype(f32)
        h *= 2
    return (u * (SCALE * second).astype(f32)).astype(f32)


def seq_sum_of_squares(v, reverse=False):
    """Running float32 sum of v[:, i]^2 for i = 0 ... 127 (or backwards), one sum per group."""
    total = np.zeros(v.shape[0], dtype=f32)
    for i in (range(GROUP - 1, -1, -1) if reverse else range(GROUP)):
        total = (total + v[:, i] * v[:, i]).astype(f32)
    return total


def quantize_groups(x, kind, variant="spec"):
    """Indices (G x 128) and stored norms (fp16) of groups x (G x 128)."""
    c = np.array(CENTROIDS[kind], dtype=f32)
    t = np.array(THRESHOLDS[kind], dtype=np.float64 if variant == "double_thresholds" else f32)
    norm = np.sqrt(seq_sum_of_squares(x, reverse=variant == "reverse_sums"), dtype=f32)[:, None]
    big = norm > f32(1e-10)
    with np.errstate(divide="ignore", invalid="ignore"):
        if variant == "divide":
            u = np.where(big, x / norm, f32(0)).astype(f32)
        elif kind == "turbo4":                            # u = norm > 1e-10 ? x * (1/norm) : 0
            u = np.where(big, x * (f32(1) / norm), f32(0)).astype(f32)
        else:                                             # inv = norm > 1e-10 ? 1/norm : 0; u = x * inv
            u = (x * np.where(big, f32(1) / norm, f32(0))).astype(f32)
    r = rotate(u, SIGN1, SIGN2)
    idx = np.full(r.shape, len(t))                        # the first i with r < t[i] (strict <), else the last
    for i in range(len(t) - 1, -1, -1):
        idx = np.where(r < t[i], i, idx)
    rn = np.sqrt(seq_sum_of_squares(c[idx], reverse=variant == "reverse_sums"), dtype=f32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        corrected = norm * (f32(1) / rn) if variant == "reciprocal_rn" else norm / rn
        stored = np.where(rn > f32(1e-10), corrected, norm).astype(np.float16)[:, 0]
    return idx, stored


def pack(kind, idx, stored):
    out = bytearray(stored.tobytes())
    if kind == "turbo4":
        out += bytes(2)                                  # rnorm, written 0
        qs = bytearray(64)
        for j, i in enumerate(idx):
            qs[j // 2] |= int(i) << (0 if j % 2 == 0 else 4)
        return bytes(out + qs)
    qs = bytearray(32)
    for j, i in enumerate(idx):
        qs[j // 4] |= (int(i) & 3) << (2 * (j % 4))
    out += qs
    if kind == "turbo3":
        signs = bytearray(16)
        for j, i in enumerate(idx):
            signs[j // 8] |= ((int(i) >> 2) & 1) << (j % 8)
        out += signs
    return bytes(out)


def general_groups():
    g = rng.standard_normal((GENERAL_GROUPS, GROUP)).astype(f32)
    g *= (f32(2.0) ** rng.integers(-8, 9, (GENERAL_GROUPS, 1))).astype(f32)
    g[:, [3, 40, 77]] *= f32(25)                          # outlier channels, which the rotation spreads out
    g[1] = f32(0.75)                                      # constant
    g[2] = f32(1e-3) * g[2]
    g[2, 100] = f32(9)                                    # one value dominates
    return g.astype(f32)


def sensitive_groups(count):
    variants = ["reverse_sums", "divide", "reciprocal_rn", "double_thresholds"]
    picked = []
    while sum(len(p) for p in picked) < count:
        cand = (rng.standard_normal((4000, GROUP)) * (f32(2.0) ** rng.integers(-8, 9, (4000, 1)))).astype(f32)
        for kind in CENTROIDS:
            idx0, n0 = quantize_groups(cand, kind)
            for variant in variants:
                idx1, n1 = quantize_groups(cand, kind, variant)
                hit = np.nonzero((n0.view(np.uint16) != n1.view(np.uint16)) | np.any(idx0 != idx1, axis=1))[0]
                picked.append(cand[hit[:1]])
    return np.concatenate(picked)[:count]


rng = np.random.default_rng(20261123)
x = np.ascontiguousarray(np.concatenate([general_groups(), sensitive_groups(SENSITIVE_GROUPS)]).astype(f32))
(HERE / "turbo_input_f32.bin").write_bytes(x.tobytes())
for kind, c in CENTROIDS.items():
    idx, stored = quantize_groups(x, kind)
    (HERE / f"turbo_{kind}.bin").write_bytes(b"".join(pack(kind, i, s) for i, s in zip(idx, stored)))
    values = np.array(c, dtype=f32)[idx[:DEQUANT_GROUPS]] * stored[:DEQUANT_GROUPS, None].astype(f32)
    original = rotate(values.astype(f32), SIGN2, SIGN1)  # the inverse: s2 first, then s1
    (HERE / f"turbo_{kind}_dequant.bin").write_bytes(original.astype(f32).tobytes())
print(f"wrote {x.shape[0]} turbo groups")
