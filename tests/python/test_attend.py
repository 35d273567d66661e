"""kvflash.attend equals `kvflash attend` exactly, and matches an independent float64 computation."""
import math

import numpy as np
import pytest

import kvflash
from conftest import random_rows

# (ktype, vtype, n_head_q, n_head_kv, n_q, n_kv, d_k, d_v, batch, options)
CASES = [
    ("f16", "f16", 4, 4, 1, 37, 64, 64, None, {}),
    ("q8_0", "q4_0", 6, 2, 3, 70, 96, 32, None, {"causal": True}),
    ("q4_1", "q5_0", 9, 3, 5, 41, 64, 128, None, {"mask": "f32", "softcap": 30.0}),
    ("q5_1", "q8_0", 8, 1, 9, 100, 32, 64, None, {"alibi": 8.0, "causal": True, "sinks": True}),
    ("turbo3", "turbo4", 4, 2, 2, 33, 80, 80, None, {"window": 7, "scale": 0.2}),
    ("turbo2", "bf16", 5, 5, 4, 29, 192, 40, None, {"mask": "f16_heads", "causal": True, "window": 12}),
    ("f32", "q8_0", 6, 3, 7, 50, 40, 96, 2, {"mask": "f32_batch", "sinks": True}),
    ("q8_0", "q8_0", 2, 1, 3, 20, 64, 64, 3, {"mask": "f32_full", "causal": True, "alibi": 2.0}),
    ("bf16", "f32", 3, 1, 6, 4, 8, 12, None, {"causal": True}),  # n_q > n_kv: the first rows see no key
]


def make_inputs(case, seed):
    ktype, vtype, hq, hkv, nq, nkv, dk, dv, batch, opts = case
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    q = rng.standard_normal(lead + (hq, nq, dk)).astype(np.float32)
    k = random_rows(rng, lead + (hkv, nkv, dk))
    v = random_rows(rng, lead + (hkv, nkv, dv))
    kwargs = {"ktype": ktype, "vtype": vtype}
    for key in ("causal", "softcap", "alibi", "window", "scale"):
        if key in opts:
            kwargs[key] = opts[key]
    mask_kind = opts.get("mask")
    if mask_kind:
        shape = {
            "f32": (nq, nkv),
            "f16_heads": (hq, nq, nkv),
            "f32_batch": (batch or 1, nq, nkv),
            "f32_full": (batch or 1, hq, nq, nkv),
        }[mask_kind]
        m = rng.standard_normal(shape).astype(np.float32)
        m[rng.random(shape) < 0.15] = -np.inf
        m[..., -1] = 0.0  # every row keeps at least its last key
        kwargs["mask"] = m.astype(np.float16) if mask_kind.startswith("f16") else m
    if opts.get("sinks"):
        kwargs["sinks"] = rng.normal(0.0, 2.0, size=hq).astype(np.float32)
    return q, k, v, kwargs


def cli_args(kwargs):
    args = ["--ktype", kwargs["ktype"], "--vtype", kwargs["vtype"]]
    if kwargs.get("causal"):
        args.append("--causal")
    for key, flag in (("softcap", "--softcap"), ("alibi", "--alibi"), ("window", "--window"), ("scale", "--scale")):
        if key in kwargs:
            args += [flag, repr(kwargs[key])]
    if "mask" in kwargs:
        args += ["--mask", "m.npy"]
    if "sinks" in kwargs:
        args += ["--sinks", "s.npy"]
    return args


@pytest.mark.parametrize("index", range(len(CASES)))
def test_attend_equals_the_cli(index, run_cli, tmp_path):
    q, k, v, kwargs = make_inputs(CASES[index], 1000 + index)
    for name, array in (("q", q), ("k", k), ("v", v), ("m", kwargs.get("mask")), ("s", kwargs.get("sinks"))):
        if array is not None:
            np.save(tmp_path / f"{name}.npy", array)
    run_cli("attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", *cli_args(kwargs), "--out", "o.npy")
    want = np.load(tmp_path / "o.npy")
    got = kvflash.attend(q, k, v, **kwargs)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def alibi_slope(max_bias, n_head, h):
    if max_bias <= 0:
        return 0.0
    n = 2 ** int(math.floor(math.log2(n_head)))
    m0, m1 = 2.0 ** (-max_bias / n), 2.0 ** (-(max_bias / 2.0) / n)
    return m0 ** (h + 1) if h < n else m1 ** (2 * (h - n) + 1)


def reference(q, k, v, *, ktype, vtype, mask=None, causal=False, scale=None, softcap=0.0, alibi=0.0, sinks=None,
              window=None):
    """Attention in float64 with numpy, over K/V as stored (quantize, then dequantize in the original domain)."""

    def stored(x, t):
        block = next(e["block_elems"] for e in kvflash.info()["types"] if e["name"] == t)
        d = x.shape[-1]
        padded = -(-d // block) * block if t.startswith("turbo") else d
        xp = np.zeros(x.shape[:-1] + (padded,), dtype=np.float32)
        xp[..., :d] = x
        back = kvflash.dequantize(kvflash.quantize(xp, t), t, xp.shape)
        return back[..., :d].astype(np.float64)

    batched = q.ndim == 4
    if mask is not None and mask.ndim == 3:
        # [batch, n_q, n_kv] with batched inputs, [n_head_q, n_q, n_kv] without.
        mask = mask[:, None] if batched else mask[None]
    if not batched:
        q, k, v = q[None], k[None], v[None]
    kd, vd = stored(k, ktype), stored(v, vtype)
    b, hq, nq, dk = q.shape
    hkv, nkv, dv = k.shape[1], k.shape[2], v.shape[3]
    if mask is not None:
        mask = mask.astype(np.float64)
        while mask.ndim < 4:
            mask = mask[None]
        mask = np.broadcast_to(mask, (b, hq, nq, nkv))
    s_scale = 1.0 / math.sqrt(dk) if not scale else scale
    out = np.zeros((b, hq, nq, dv))
    for s in range(b):
        for h in range(hq):
            kh = h // (hq // hkv)
            scores = s_scale * (q[s, h].astype(np.float64) @ kd[s, kh].T)
            if softcap > 0:
                scores = softcap * np.tanh(scores / softcap)
            if mask is not None:
                scores = scores + mask[s, h]
            pos = nkv - nq + np.arange(nq)[:, None]
            key = np.arange(nkv)[None, :]
            scores = scores - alibi_slope(alibi, hq, h) * (pos - key)
            if causal:
                scores = np.where(key > pos, -np.inf, scores)
            if window:
                scores = np.where(pos - key >= window, -np.inf, scores)
            for i in range(nq):
                row = scores[i]
                if not np.isfinite(row).any():
                    continue  # sees no key: zeros
                m = row.max()
                sink = None if sinks is None else float(sinks[h])
                if sink is not None:
                    m = max(m, sink)
                e = np.exp(row - m)
                denom = e.sum() + (math.exp(sink - m) if sink is not None else 0.0)
                out[s, h, i] = e @ vd[s, kh] / denom
    return out if batched else out[0]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_attend_matches_an_independent_float64_computation(index):
    q, k, v, kwargs = make_inputs(CASES[index], 2000 + index)
    got = kvflash.attend(q, k, v, **kwargs)
    want = reference(q, k, v, **kwargs)
    # The library computes in float64 too and rounds once: the float32 rounding is the only difference.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(want).max())))


def test_fully_masked_rows_are_zeros():
    q, k, v, kwargs = make_inputs(CASES[-1], 7)
    out = kvflash.attend(q, k, v, **kwargs)
    # n_q = 6 > n_kv = 4 with causal: rows 0 and 1 sit before the first key.
    assert np.all(out[:, :2] == 0.0)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("index", range(len(CASES)))
def test_the_cpu_backend_agrees_with_the_reference(index):
    if not kvflash.info()["backends"]["cpu"]:
        pytest.skip("this build has no cpu backend")
    q, k, v, kwargs = make_inputs(CASES[index], 3000 + index)
    want = kvflash.attend(q, k, v, **kwargs)
    got = kvflash.attend(q, k, v, backend="cpu", **kwargs)
    # NMSE <= 5e-4: the bar GGML's own flash-attention test uses for fast kernels over quantized K/V.
    assert np.sum((got - want) ** 2) <= 5e-4 * np.sum(want**2)
    assert np.all(np.isfinite(got))
