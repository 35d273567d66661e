"""Writes cross-check vectors for the GGML block types from an independent implementation: the numpy quantizers
of the PyPI package `gguf` (gguf-py), which its authors keep bit-exact with ggml's C reference.

Run: python3 -m venv /tmp/g && /tmp/g/bin/pip install gguf numpy && /tmp/g/bin/python make_gguf_vectors.py

gguf-py departs from ggml's C code only on blocks made entirely of signed zeros (C keeps max = +0.0f, so
d = 0 / -8 = -0; numpy takes the first element's sign); such blocks are left out here and covered by hand-written
tests instead.
"""
import pathlib

import numpy as np
import gguf.quants as quants
from gguf import GGMLQuantizationType as T

HERE = pathlib.Path(__file__).parent
ROWS, N = 16, 256
TYPES = {"f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0,
         "q5_1": T.Q5_1}

rng = np.random.default_rng(20261122)
scales = np.array([1e-3, 0.02, 1.0, 7.5, 100.0, 3000.0], dtype=np.float32)
x = rng.standard_normal((ROWS, N)).astype(np.float32) * scales[rng.integers(0, len(scales), (ROWS, 1))]
x[::3, ::37] *= 40.0                          # outlier channels, as real keys have
x[1] = np.round(x[1] * 4.0) / 4.0             # ties after scaling
x[2, 0:32] = -np.abs(x[2, 0:32]); x[2, 7] = -50.0  # a block whose largest magnitude is negative
x[3, 32:64] = 1.0                             # a constant block (max == min)
x[4, 64:96] = np.linspace(-1, 1, 32)          # an exact ramp
x = x.astype(np.float32)
(HERE / "gguf_input_f32.bin").write_bytes(x.tobytes())
for name, qtype in TYPES.items():
    data = quants.quantize(x, qtype)
    (HERE / f"gguf_{name}.bin").write_bytes(data.tobytes())
    deq = quants.dequantize(data, qtype).astype(np.float32)
    (HERE / f"gguf_{name}_dequant.bin").write_bytes(deq.tobytes())
print("wrote", len(TYPES), "types,", ROWS, "rows of", N)
