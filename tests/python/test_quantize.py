"""kvflash.quantize / dequantize equal `kvflash quantize` / `kvflash dequantize` byte for byte."""
import numpy as np
import pytest

import kvflash
from conftest import random_rows

TYPES = [t["name"] for t in kvflash.info()["types"]]
BLOCK = {t["name"]: t["block_elems"] for t in kvflash.info()["types"]}
BLOCK_BYTES = {t["name"]: t["block_bytes"] for t in kvflash.info()["types"]}


def row_length(type_name: str, blocks: int) -> int:
    return BLOCK[type_name] * blocks if BLOCK[type_name] > 1 else 32 * blocks + 8


@pytest.mark.parametrize("type_name", TYPES)
def test_quantize_is_byte_identical_to_the_cli(type_name, run_cli, tmp_path):
    rng = np.random.default_rng(100 + TYPES.index(type_name))
    x = random_rows(rng, (3, 2, row_length(type_name, 3)))
    x[0, 0, :5] = [0.0, -0.0, 1e-30, -7.5, 65504.0]  # zeros, a subnormal-ish value, an fp16-max value
    np.save(tmp_path / "x.npy", x)
    run_cli("quantize", "--type", type_name, "x.npy", "x.bin")
    got = kvflash.quantize(x, type_name)
    assert got.dtype == np.uint8
    n = x.shape[-1]
    assert got.shape == (3, 2, n // BLOCK[type_name] * BLOCK_BYTES[type_name])
    assert got.tobytes() == (tmp_path / "x.bin").read_bytes()
    assert kvflash.row_bytes(type_name, n) == got.shape[-1]


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("rotated", [False, True])
def test_dequantize_equals_the_cli(type_name, rotated, run_cli, tmp_path):
    rng = np.random.default_rng(7 + TYPES.index(type_name))
    x = random_rows(rng, (5, row_length(type_name, 2)))
    data = kvflash.quantize(x, type_name)
    (tmp_path / "x.bin").write_bytes(data.tobytes())
    shape = ",".join(map(str, x.shape))
    run_cli("dequantize", "--type", type_name, "--shape", shape, "x.bin", "y.npy", *(["--rotated"] if rotated else []))
    want = np.load(tmp_path / "y.npy")
    for source in (data, data.tobytes(), bytearray(data.tobytes()), data.reshape(-1).view(np.int8)):
        got = kvflash.dequantize(source, type_name, x.shape, rotated=rotated)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_array_equal(got, want)


def test_non_finite_inputs_quantize_as_the_cli_does(run_cli, tmp_path):
    x = np.random.default_rng(3).standard_normal((4, 128)).astype(np.float32)
    x[0, 3], x[1, 70], x[2, 5], x[3, 0] = np.inf, -np.inf, np.nan, np.nan
    np.save(tmp_path / "x.npy", x)
    for type_name in TYPES:
        run_cli("quantize", "--type", type_name, "x.npy", "x.bin")
        assert kvflash.quantize(x, type_name).tobytes() == (tmp_path / "x.bin").read_bytes(), type_name


def test_an_array_without_rows_quantizes_to_nothing():
    out = kvflash.quantize(np.zeros((0, 64), dtype=np.float32), "q8_0")
    assert out.shape == (0, 68) and out.dtype == np.uint8
    assert kvflash.dequantize(b"", "q8_0", (0, 64)).shape == (0, 64)


def test_round_trip_error_is_small_for_8_bit():
    x = random_rows(np.random.default_rng(11), (16, 256), outliers=False)
    y = kvflash.dequantize(kvflash.quantize(x, "q8_0"), "q8_0", x.shape)
    assert np.sum((y - x) ** 2) / np.sum(x**2) < 1e-4
