"""Bad input raises ValueError or TypeError with the library's message; nothing crashes the interpreter."""
import numpy as np
import pytest

import kvflash

X = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32)
Q = np.random.default_rng(6).standard_normal((6, 2, 64)).astype(np.float32)
K = np.random.default_rng(7).standard_normal((3, 10, 64)).astype(np.float32)
V = np.random.default_rng(8).standard_normal((3, 10, 32)).astype(np.float32)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: kvflash.quantize(X, "q3_k"), ValueError, "unknown KV type 'q3_k'"),
        (lambda: kvflash.quantize(X[:, :48], "q4_0"), ValueError, "not a multiple of q4_0's block size 32"),
        (lambda: kvflash.quantize(X, "turbo3"), ValueError, "turbo3's block size 128"),
        (lambda: kvflash.quantize(np.float32(1.0), "f16"), ValueError, "scalar"),
        (lambda: kvflash.quantize(np.zeros((3, 0), np.float32), "f16"), ValueError, "rows are empty"),
        (lambda: kvflash.quantize(X, 3), TypeError, "KV type name"),
        (lambda: kvflash.quantize("not an array", "f16"), TypeError, "must be an array"),
        (lambda: kvflash.quantize(np.array(["a", "b"]), "f16"), TypeError, "real numbers"),
        (lambda: kvflash.quantize(X.astype(np.complex64), "f16"), TypeError, "real numbers"),
        (lambda: kvflash.dequantize(b"\0" * 67, "q8_0", (1, 64)), ValueError, "holds 67 bytes"),
        (lambda: kvflash.dequantize(b"\0" * 68, "q8_0", (1, 60)), ValueError, "block size 32"),
        (lambda: kvflash.dequantize(b"", "q8_0", (2, 0)), ValueError, "row length) is 0"),
        (lambda: kvflash.dequantize(b"\0" * 68, "q8_0", (1, -64)), ValueError, "negative"),
        (lambda: kvflash.dequantize(X, "f32", X.shape), TypeError, "bytes (uint8)"),
        (lambda: kvflash.dequantize(b"\0" * 68, "q8_0", "1,64"), TypeError, "shape must hold ints"),
        (lambda: kvflash.attend(Q[:5], K, V), ValueError, "heads do not divide"),
        (lambda: kvflash.attend(Q, K[:, :, :32], V), ValueError, "(d_k) is 32, expected 64"),
        (lambda: kvflash.attend(Q, K, V[:, :9]), ValueError, "(n_kv) is 9, expected 10"),
        (lambda: kvflash.attend(Q, K, V[None]), ValueError, "batch axis"),
        (lambda: kvflash.attend(Q[0], K, V), ValueError, "q has shape (2, 64)"),
        (lambda: kvflash.attend(Q, K, V, ktype="q8_0", vtype="q4_0"), None, None),
        (lambda: kvflash.attend(Q, K[:, :, :48], V, ktype="f16"), ValueError, "(d_k) is 48"),
        (lambda: kvflash.attend(Q[:, :, :40], K[:, :, :40], V, ktype="q8_0"), ValueError, "block size 32"),
        (lambda: kvflash.attend(Q, K, V, mask=np.zeros((3, 10), np.float32)), ValueError, "mask axis 0 (n_q)"),
        (lambda: kvflash.attend(Q, K, V, mask=np.zeros((2, 11), np.float32)), ValueError, "(n_kv) is 11"),
        (lambda: kvflash.attend(Q, K, V, mask=np.zeros(10, np.float32)), ValueError, "a mask is"),
        (lambda: kvflash.attend(Q, K, V, sinks=np.zeros(5, np.float32)), ValueError, "sinks are [n_head_q]"),
        (lambda: kvflash.attend(Q, K, V, backend="tpu"), ValueError, "unknown backend 'tpu'"),
        (lambda: kvflash.attend(Q, K, V, window=-1), ValueError, "window = -1"),
        (lambda: kvflash.attend(Q, K, V, window=2.5), TypeError, "window must be an int"),
        (lambda: kvflash.attend(Q, K, V, softcap=-1.0), ValueError, "softcap"),
        (lambda: kvflash.attend(Q, K, V, alibi=-2.0), ValueError, "alibi"),
        (lambda: kvflash.attend(Q, K, V, scale=float("nan")), ValueError, "scale"),
        (lambda: kvflash.attend(Q, K, V, ktype="f8"), ValueError, "unknown KV type 'f8'"),
        (lambda: kvflash.row_bytes("q8_0", 33), ValueError, "block size 32"),
        (lambda: kvflash.attend(np.zeros((1, 1, 2048), np.float32), np.zeros((1, 1, 2048), np.float32),
                                np.zeros((1, 1, 32), np.float32)), ValueError, "d_k = 2048 is outside"),
        (lambda: kvflash.attend(Q[:, :0], K, V), ValueError, "n_q = 0"),
    ],
)
def test_bad_input_raises_with_the_library_message(call, error, message):
    if error is None:  # a control: the same call with good arguments works
        assert np.all(np.isfinite(call()))
        return
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_unavailable_backends_are_value_errors_naming_the_backend():
    for name, available in kvflash.info()["backends"].items():
        if not available:
            with pytest.raises(ValueError, match=f"backend '{name}' is not available"):
                kvflash.attend(Q, K, V, backend=name)


def test_errors_leave_the_interpreter_usable():
    for _ in range(3):
        with pytest.raises(ValueError):
            kvflash.attend(Q, K, V[:, :3])
    assert kvflash.attend(Q, K, V).shape == (6, 2, 32)
