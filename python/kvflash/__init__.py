"""kvflash: attention over quantized KV caches.

The functions mirror the ``kvflash`` command line, with the same shapes and semantics:

* ``quantize(x, type)`` -> ``numpy.uint8`` array of the stored bytes, one row per row of ``x``
  (the bytes ``kvflash quantize`` writes),
* ``dequantize(data, type, shape, rotated=False)`` -> float32 array of ``shape``,
* ``attend(q, k, v, *, ktype="f16", vtype="f16", mask=None, causal=False, scale=None, softcap=0.0, alibi=0.0,
  sinks=None, window=None, backend="ref")`` -> float32 ``[n_head_q, n_q, d_v]`` (or ``[batch, ...]``),
* ``info()`` -> version, backends, KV types.

Arrays may be anything with ``__dlpack__`` or the buffer protocol (NumPy arrays, memoryviews, ...); they are read
in place when they already are C-contiguous with the right dtype, else converted once. Bad input raises
``ValueError`` or ``TypeError`` with the library's message.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Optional, Union

import numpy as np

from . import _kvflash as _native

__version__: str = _native.version()

__all__ = ["quantize", "dequantize", "attend", "info", "row_bytes", "__version__"]

# DLPack device types (dlpack.h): arrays on these are host memory.
_DLPACK_HOST_DEVICES = (1, 3)  # kDLCPU, kDLCUDAHost


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """Any array-like as a NumPy array, zero-copy where the source allows it."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        device_type, device_id = x.__dlpack_device__()
        if int(device_type) not in _DLPACK_HOST_DEVICES:
            raise TypeError(
                f"{name} lives on DLPack device ({int(device_type)}, {device_id}); this build reads host "
                "(CPU) arrays only: copy it to the host first"
            )
        try:
            return np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError) as e:
            raise TypeError(f"{name}: cannot read it through DLPack: {e}") from None
    if isinstance(x, (str, bytes)) and name != "data":
        raise TypeError(f"{name} must be an array, not {type(x).__name__}")
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} is not an array (no __dlpack__ or buffer protocol): {e}") from None


def _float32(x: Any, name: str) -> np.ndarray:
    """A C-contiguous float32 array of x's values (float16/float64/integer inputs are converted)."""
    a = _as_numpy(x, name)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float32 preferred), not dtype {a.dtype}")
    # order="C" copies only when needed, and (unlike ascontiguousarray) keeps a 0-d array 0-d.
    return np.asarray(a, dtype=np.float32, order="C")


def _type_name(t: Any, name: str) -> str:
    if not isinstance(t, str):
        raise TypeError(f"{name} must be a KV type name such as 'q8_0', not {type(t).__name__}")
    return t


def _shape(shape: Union[int, Iterable[int]]) -> list:
    if isinstance(shape, numbers.Integral):
        return [int(shape)]
    try:
        dims = list(shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, not {type(shape).__name__}") from None
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"shape must hold ints, got {d!r}")
        out.append(int(d))
    return out


def row_bytes(type: str, n: int) -> int:
    """Bytes of one stored row of ``n`` values of ``type`` (ValueError if n is not a multiple of its block)."""
    return _native.row_bytes(_type_name(type, "type"), int(n))


def quantize(x: Any, type: str) -> np.ndarray:
    """Quantizes the rows of ``x`` (float32, last axis a multiple of the type's block size).

    Returns a ``numpy.uint8`` array of shape ``x.shape[:-1] + (row_bytes,)``: its bytes (``.tobytes()``) are
    exactly what ``kvflash quantize --type TYPE`` writes for the same array.
    """
    return _native.quantize(_float32(x, "x"), _type_name(type, "type"))


def dequantize(data: Any, type: str, shape: Union[int, Iterable[int]], rotated: bool = False) -> np.ndarray:
    """Turns stored rows back into float32 values of ``shape`` (its last axis is the row length).

    ``data`` holds the bytes (``bytes``, ``bytearray``, a uint8/int8 array of any shape, ...). Turbo types give
    the reconstruction in the original domain unless ``rotated`` is true (then the stored rotated-domain values).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        a = np.frombuffer(data, dtype=np.uint8)
    else:
        a = _as_numpy(data, "data")
        if a.dtype.itemsize != 1 or a.dtype.kind not in "ui":
            raise TypeError(f"data must hold bytes (uint8), not dtype {a.dtype}")
        a = np.asarray(a, order="C").view(np.uint8).reshape(-1)
    return _native.dequantize(a, _type_name(type, "type"), _shape(shape), bool(rotated))


def attend(
    q: Any,
    k: Any,
    v: Any,
    *,
    ktype: str = "f16",
    vtype: str = "f16",
    mask: Any = None,
    causal: bool = False,
    scale: Optional[float] = None,
    softcap: float = 0.0,
    alibi: float = 0.0,
    sinks: Any = None,
    window: Optional[int] = None,
    backend: str = "ref",
) -> np.ndarray:
    """Attention over K/V quantized to ``ktype``/``vtype``, as ``kvflash attend`` computes it.

    q: float32 ``[n_head_q, n_q, d_k]``; k: ``[n_head_kv, n_kv, d_k]``; v: ``[n_head_kv, n_kv, d_v]``, or all three
    with a leading batch axis. K and V are first quantized row by row exactly as ``quantize`` does (turbo rows
    zero-padded to a multiple of 128). mask: additive, float32 or float16, ``[n_q, n_kv]``, ``[batch, n_q, n_kv]``
    (batched) or ``[n_head_q, n_q, n_kv]`` (unbatched), or ``[batch, n_head_q, n_q, n_kv]``; an axis of size 1
    broadcasts. sinks: float32 ``[n_head_q]``. scale None means 1/sqrt(d_k); window None means no window. Causal
    masking, the window and ALiBi are bottom-right aligned (query row i sits at position n_kv - n_q + i).

    Returns float32 ``[n_head_q, n_q, d_v]`` (``[batch, n_head_q, n_q, d_v]`` for batched inputs).
    """
    mask_array = None
    if mask is not None:
        m = _as_numpy(mask, "mask")
        mask_array = np.asarray(m, order="C") if m.dtype == np.float16 else _float32(m, "mask")
    sinks_array = None if sinks is None else _float32(sinks, "sinks")
    scale_value = 0.0 if scale is None else float(scale)  # 0, as in the CLI, also means 1/sqrt(d_k)
    window_value = 0 if window is None else window
    if isinstance(window_value, bool) or not isinstance(window_value, numbers.Integral):
        raise TypeError(f"window must be an int or None, not {type(window).__name__}")
    if int(window_value) < 0:
        raise ValueError(f"window = {int(window_value)} must be >= 0 (None: no window)")
    if float(softcap) < 0:
        raise ValueError(f"softcap = {float(softcap)} must be >= 0 (0: none)")
    if float(alibi) < 0:
        raise ValueError(f"alibi = {float(alibi)} must be >= 0 (0: none)")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be 'ref', 'cpu' or 'cuda', not {type(backend).__name__}")
    return _native.attend(
        _float32(q, "q"),
        _float32(k, "k"),
        _float32(v, "v"),
        _type_name(ktype, "ktype"),
        _type_name(vtype, "vtype"),
        mask_array,
        bool(causal),
        scale_value,
        float(softcap),
        float(alibi),
        sinks_array,
        int(window_value),
        backend,
    )


def info() -> dict:
    """Version, backends (name -> available in this build), KV types and their traits, whether CUDA was built."""
    return _native.info()
