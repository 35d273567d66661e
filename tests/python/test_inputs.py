"""Inputs: NumPy arrays, anything with __dlpack__, anything with the buffer protocol; views and other dtypes."""
import array

import numpy as np
import pytest

import kvflash


class DlpackOnly:
    """Exposes an array through DLPack only (as torch/jax/cupy tensors do), not through the buffer protocol."""

    def __init__(self, a, device=(1, 0)):
        self._a = a
        self._device = device

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


RNG = np.random.default_rng(21)
Q = RNG.standard_normal((4, 3, 32)).astype(np.float32)
K = RNG.standard_normal((2, 17, 32)).astype(np.float32)
V = RNG.standard_normal((2, 17, 32)).astype(np.float32)


def test_dlpack_inputs_give_the_numpy_results():
    want = kvflash.attend(Q, K, V, ktype="q8_0", vtype="q4_0", causal=True)
    got = kvflash.attend(DlpackOnly(Q), DlpackOnly(K), DlpackOnly(V), ktype="q8_0", vtype="q4_0", causal=True)
    np.testing.assert_array_equal(got, want)
    x = RNG.standard_normal((3, 128)).astype(np.float32)
    assert kvflash.quantize(DlpackOnly(x), "turbo4").tobytes() == kvflash.quantize(x, "turbo4").tobytes()
    data = kvflash.quantize(x, "q8_0")
    np.testing.assert_array_equal(kvflash.dequantize(DlpackOnly(data), "q8_0", x.shape),
                                  kvflash.dequantize(data, "q8_0", x.shape))


def test_device_arrays_are_a_type_error_not_a_crash():
    with pytest.raises(TypeError, match="DLPack device"):
        kvflash.attend(DlpackOnly(Q, device=(2, 0)), K, V)


def test_buffer_protocol_inputs():
    x = RNG.standard_normal(64).astype(np.float32)
    want = kvflash.quantize(x, "q8_0").tobytes()
    assert kvflash.quantize(array.array("f", x.tolist()), "q8_0").tobytes() == want
    assert kvflash.quantize(memoryview(x), "q8_0").tobytes() == want
    assert kvflash.dequantize(memoryview(bytearray(want)), "q8_0", 64).shape == (64,)


def test_strided_views_and_other_dtypes_are_converted_once():
    big = RNG.standard_normal((4, 6, 64)).astype(np.float32)
    view = big[:, ::2, :]  # not contiguous
    assert kvflash.quantize(view, "q4_0").tobytes() == kvflash.quantize(np.ascontiguousarray(view), "q4_0").tobytes()
    as64 = view.astype(np.float64)  # float64 values that are float32 values: converted exactly
    assert kvflash.quantize(as64, "q4_0").tobytes() == kvflash.quantize(view, "q4_0").tobytes()
    np.testing.assert_array_equal(kvflash.attend(Q.astype(np.float64), K, V), kvflash.attend(Q, K, V))
    assert kvflash.quantize(Q.tolist(), "f16").shape == (4, 3, 64)


def test_outputs_are_writable_arrays_that_outlive_their_inputs():
    import gc

    q, k, v = Q.copy(), K.copy(), V.copy()
    out = kvflash.attend(q, k, v)
    want = kvflash.attend(Q, K, V)
    del q, k, v
    gc.collect()
    assert out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, want)
    out[...] = 0.0  # writing it must not disturb anything else
    np.testing.assert_array_equal(kvflash.attend(Q, K, V), want)


def test_info_mirrors_the_library(cli):
    import subprocess

    info = kvflash.info()
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    assert info["version"] == version == kvflash.__version__
    assert set(info["backends"]) == {"ref", "cpu", "cuda"} and info["backends"]["ref"] is True
    names = [t["name"] for t in info["types"]]
    assert names == ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "turbo2", "turbo3", "turbo4"]
    q8 = info["types"][3]
    assert (q8["block_elems"], q8["block_bytes"], q8["bits_per_value"]) == (32, 34, 8.5)
    # `kvflash info` prints "cpu: MODEL, N hardware threads" and "cpu features: avx2 yes, fma no, ...".
    text = subprocess.run([str(cli), "info"], capture_output=True, text=True, check=True).stdout
    cpu_line = next(l for l in text.splitlines() if l.startswith("cpu: "))
    assert cpu_line == f"cpu: {info['cpu']['model']}, {info['cpu']['threads']} hardware threads"
    features_line = next((l for l in text.splitlines() if l.startswith("cpu features: ")), None)
    if features_line is not None:
        shown = dict(item.split() for item in features_line[len("cpu features: "):].split(", "))
        assert shown == {k: "yes" if v else "no" for k, v in info["cpu"]["features"].items()}
    for name, available in info["backends"].items():
        line = next(l for l in text.splitlines() if l.strip().startswith(name + " "))
        assert ("not available" not in line) == available, line
