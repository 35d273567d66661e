"""kvflash.KvCache: rows stored as quantize() stores them, sequences, checkpoints, attention through page tables."""
import numpy as np
import pytest

import kvflash
from conftest import random_rows

LAYERS, HEADS_KV, DK, DV = 2, 2, 96, 64


def make_cache(ktype="q8_0", vtype="q4_0", **kw):
    args = dict(n_layers=LAYERS, n_head_kv=HEADS_KV, d_k=DK, d_v=DV, ktype=ktype, vtype=vtype, page_rows=8,
                n_pages=16, max_sequences=4)
    args.update(kw)
    return kvflash.KvCache(**args)


def tokens(rng, n, dk=DK, dv=DV):
    return random_rows(rng, (LAYERS, n, HEADS_KV, dk)), random_rows(rng, (LAYERS, n, HEADS_KV, dv))


def stored(row, type_name):
    """The bytes quantize() gives a row, zero-padded first for turbo types (as the cache stores it)."""
    block = 128 if type_name.startswith("turbo") else 1
    padded = np.zeros(-(-row.shape[-1] // block) * block, dtype=np.float32)
    padded[: row.shape[-1]] = row
    return kvflash.quantize(padded, type_name).tobytes()


@pytest.mark.parametrize("ktype, vtype", [("turbo3", "q4_0"), ("f16", "turbo4"), ("bf16", "f32")])
def test_append_stores_the_bytes_quantize_gives(ktype, vtype):
    dk = DK if ktype.startswith("q") else 80  # turbo rows of 80 values are zero-padded to 128
    cache = make_cache(ktype, vtype, d_k=dk)
    seq = cache.add_sequence()
    k, v = tokens(np.random.default_rng(1), 11, dk=dk)
    assert cache.append(seq, k, v) == 0
    k2, v2 = tokens(np.random.default_rng(2), 3, dk=dk)
    assert cache.append(seq, k2, v2) == 11
    assert cache.length(seq) == 14
    for layer in range(LAYERS):
        for pos, (kk, vv) in enumerate([(k, v)] * 11 + [(k2, v2)] * 3):
            t = pos if pos < 11 else pos - 11
            for h in range(HEADS_KV):
                assert cache.k_row(seq, layer, pos, h).tobytes() == stored(kk[layer, t, h], ktype)
                assert cache.v_row(seq, layer, pos, h).tobytes() == stored(vv[layer, t, h], vtype)


def test_fork_truncate_remove_and_pages():
    cache = make_cache()
    a = cache.add_sequence()
    cache.append(a, *tokens(np.random.default_rng(3), 20))
    assert cache.pages_total - cache.pages_free == 3
    b = cache.fork(a)
    assert cache.pages_total - cache.pages_free == 3, "a fork copies no page"
    cache.append(b, *tokens(np.random.default_rng(4), 5))
    assert (cache.length(a), cache.length(b)) == (20, 25)
    assert cache.k_row(a, 1, 19, 1).tobytes() == cache.k_row(b, 1, 19, 1).tobytes()
    cache.truncate(b, 2)
    assert cache.length(b) == 2
    cache.remove(a)
    cache.remove(b)
    assert cache.pages_free == cache.pages_total == 16
    assert cache.sequences_free == 4
    assert cache.config["n_pages"] == 16 and cache.config["ktype"] == "q8_0"
    assert cache.bytes > 0


def test_checkpoints_round_trip_and_damaged_ones_are_rejected(tmp_path):
    cache = make_cache("turbo2", "q5_1")
    seq = cache.add_sequence()
    cache.append(seq, *tokens(np.random.default_rng(5), 13))
    blob = cache.checkpoint(seq)
    assert isinstance(blob, bytes) and len(blob) > 0
    again = cache.restore(blob)
    for pos in (0, 7, 12):
        assert cache.k_row(again, 1, pos, 0).tobytes() == cache.k_row(seq, 1, pos, 0).tobytes()
        assert cache.v_row(again, 0, pos, 1).tobytes() == cache.v_row(seq, 0, pos, 1).tobytes()
    cache.checkpoint_to_file(seq, tmp_path / "seq.ckpt")
    from_file = cache.restore_from_file(tmp_path / "seq.ckpt")
    assert cache.length(from_file) == 13
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0x10
    free = cache.pages_free
    with pytest.raises(ValueError):
        cache.restore(damaged)
    assert cache.pages_free == free
    with pytest.raises(OSError):
        cache.restore_from_file(tmp_path / "missing.ckpt")
    other = make_cache("q8_0", "q8_0")
    with pytest.raises(ValueError):
        other.restore(blob)  # written by a cache of another config


def test_attend_through_page_tables_equals_attend_over_dense_rows():
    cache = make_cache("q8_0", "q4_0", d_k=96)
    rng = np.random.default_rng(6)
    a = cache.add_sequence()
    k_a, v_a = tokens(rng, 19, dk=96)
    cache.append(a, k_a, v_a)
    b = cache.fork(a)
    k_t, v_t = tokens(rng, 6, dk=96)
    cache.append(b, k_t, v_t)
    q = rng.standard_normal((2, 4, 3, 96)).astype(np.float32)
    sinks = rng.standard_normal(4).astype(np.float32)
    for layer in range(LAYERS):
        got = cache.attend([a, b], q, layer=layer, causal=True, sinks=sinks, softcap=25.0)
        assert got.shape == (2, 4, 3, DV)
        for s, (k, v) in enumerate([(k_a, v_a), (np.concatenate([k_a, k_t], 1), np.concatenate([v_a, v_t], 1))]):
            # The cache holds [layer, token, head, d]; kvflash.attend takes [head, token, d].
            want = kvflash.attend(q[s], k[layer].transpose(1, 0, 2), v[layer].transpose(1, 0, 2), ktype="q8_0",
                                  vtype="q4_0", causal=True, sinks=sinks, softcap=25.0)
            np.testing.assert_array_equal(got[s], want)


def test_cache_errors_are_exceptions_that_change_nothing():
    cache = make_cache("f16", "f16", n_pages=2, max_sequences=1)
    seq = cache.add_sequence()
    cache.append(seq, *tokens(np.random.default_rng(7), 10))
    with pytest.raises(MemoryError, match="kv cache"):
        cache.append(seq, *tokens(np.random.default_rng(8), 7))
    assert cache.length(seq) == 10 and cache.pages_free == 0
    with pytest.raises(MemoryError):
        cache.add_sequence()
    k, v = tokens(np.random.default_rng(9), 2)
    with pytest.raises(ValueError, match="k has shape"):
        cache.append(seq, k[:, :, :1], v)
    with pytest.raises(ValueError):
        cache.append(3, k, v)
    with pytest.raises(ValueError):
        cache.truncate(seq, 11)
    with pytest.raises(ValueError, match="q has shape"):
        cache.attend([seq], np.zeros((2, 4, 1, DK), np.float32))
    with pytest.raises(ValueError):
        cache.attend([seq], np.zeros((1, 4, 1, DK), np.float32), layer=LAYERS)
    with pytest.raises(ValueError, match="d_k"):
        kvflash.KvCache(d_k=80, ktype="q8_0", n_pages=4)  # 80 is not a multiple of 32
    with pytest.raises(ValueError, match="unknown KV type"):
        kvflash.KvCache(ktype="q3", n_pages=4)
