"""kvflash: attention over quantized KV caches.

The functions mirror the ``kvflash`` command line, with the same shapes and semantics:

* ``quantize(x, type)`` -> ``numpy.uint8`` array of the stored bytes, one row per row of ``x``
  (the bytes ``kvflash quantize`` writes),
* ``dequantize(data, type, shape, rotated=False)`` -> float32 array of ``shape``,
* ``attend(q, k, v, *, ktype="f16", vtype="f16", mask=None, causal=False, scale=None, softcap=0.0, alibi=0.0,
  sinks=None, window=None, backend="ref")`` -> float32 ``[n_head_q, n_q, d_v]`` (or ``[batch, ...]``),
* ``plan(model, ctx=..., batch=..., ktype=..., vtype=..., budget=...)`` -> dict with the fields of
  ``kvflash plan --json`` (KV cache, workspace and total bytes, fits, max_context per KV type, comparison),
* ``KvCache`` -> the paged KV cache (append quantizes on write; fork, truncate, checkpoint/restore, attend),
* ``info()`` -> version, backends, KV types.

Arrays may be anything with ``__dlpack__`` or the buffer protocol (NumPy arrays, memoryviews, ...); they are read
in place when they already are C-contiguous with the right dtype, else converted once. Bad input raises
``ValueError`` or ``TypeError`` with the library's message.
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Iterable, Optional, Union

import numpy as np

from . import _kvflash as _native

__version__: str = _native.version()

__all__ = ["quantize", "dequantize", "attend", "plan", "model_presets", "info", "row_bytes", "KvCache", "__version__"]

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


def _options(scale, softcap, alibi, window):
    """The attention options as the native calls take them (None -> 0 = default / none), checked as the CLI does."""
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
    return scale_value, float(softcap), float(alibi), int(window_value)


def _backend(backend: Any) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be 'ref', 'cpu' or 'cuda', not {type(backend).__name__}")
    return backend


def _bytes(data: Any, name: str) -> np.ndarray:
    """A flat uint8 array over bytes-like data (bytes, bytearray, memoryview, uint8/int8 arrays)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    a = _as_numpy(data, name)
    if a.dtype.itemsize != 1 or a.dtype.kind not in "ui":
        raise TypeError(f"{name} must hold bytes (uint8), not dtype {a.dtype}")
    return np.asarray(a, order="C").view(np.uint8).reshape(-1)


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
    return _native.dequantize(_bytes(data, "data"), _type_name(type, "type"), _shape(shape), bool(rotated))


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
    scale_value, softcap_value, alibi_value, window_value = _options(scale, softcap, alibi, window)
    return _native.attend(
        _float32(q, "q"),
        _float32(k, "k"),
        _float32(v, "v"),
        _type_name(ktype, "ktype"),
        _type_name(vtype, "vtype"),
        mask_array,
        bool(causal),
        scale_value,
        softcap_value,
        alibi_value,
        sinks_array,
        window_value,
        _backend(backend),
    )


_SIZE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(.*)")
_UNITS = {"": 1.0, "B": 1.0, "KiB": 1024.0, "K": 1024.0, "MiB": 1024.0**2, "M": 1024.0**2, "GiB": 1024.0**3,
          "G": 1024.0**3, "TiB": 1024.0**4, "T": 1024.0**4, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def _size(value: Any, name: str) -> int:
    """Bytes from an int or a size string ("16GiB", "512MiB", "80GB", "1000"), with the CLI's units."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of bytes or a size such as '16GiB', not a bool")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a number of bytes or a size such as '16GiB', not {type(value).__name__}")
    m = _SIZE.fullmatch(value)
    if m is None or float(m.group(1)) < 0:
        raise ValueError(f"{name} = '{value}' is not a size (e.g. 16GiB, 512MiB, 1000000)")
    if m.group(2) not in _UNITS:
        raise ValueError(f"{name} = '{value}' has an unknown unit '{m.group(2)}'")
    size = float(m.group(1)) * _UNITS[m.group(2)]
    if size > 9.0e18:
        raise ValueError(f"{name} = '{value}' is too large")
    return int(size)


def plan(model: Optional[str] = None, *, gguf: Any = None, ctx: Optional[int] = None, batch: int = 1,
         ktype: str = "f16", vtype: str = "f16", budget: Any = None, ubatch: int = 512, other: Any = 0,
         backend: Optional[str] = None) -> dict:
    """The memory plan of a model's attention, as ``kvflash plan --json`` prints it (the same keys and values).

    model: a preset name (``model_presets()``) or gguf: a GGUF file (only its header and metadata are read).
    ctx: tokens per sequence the cache holds (default: the model's context length); batch: sequences; ktype/vtype:
    KV types; budget: bytes or a size string ("16GiB") to check against; ubatch: query rows per attention call;
    other: bytes held besides (weights); backend: whose kernels the workspace is planned for (default: cuda, else
    cpu, else ref, the first with kernels in this build).
    """
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a preset name, not {type(model).__name__}")
    return _native.plan(
        model,
        None if gguf is None else str(gguf),
        None if ctx is None else int(ctx),
        int(batch),
        _type_name(ktype, "ktype"),
        _type_name(vtype, "vtype"),
        None if budget is None else _size(budget, "budget"),
        int(ubatch),
        _size(other, "other"),
        None if backend is None else _backend(backend),
    )


def model_presets() -> list:
    """Names of the built-in model presets (``kvflash plan --list-models``)."""
    return _native.model_presets()


class KvCache:
    """A fixed-capacity paged KV cache (kvflash::KvCache): pages of ``page_rows`` tokens shared by every layer,
    sequences with their own page tables, quantize-on-write, copy-on-write forks, checkpoints. Nothing allocates
    after construction; a call that fails raises and leaves the cache unchanged.

    Give exactly one of ``n_pages`` and ``capacity_tokens``. Sequence ids are small ints (slots).
    """

    def __init__(self, *, n_layers: int = 1, n_head_kv: int = 1, d_k: int = 128, d_v: int = 128,
                 ktype: str = "f16", vtype: str = "f16", page_rows: int = 16, n_pages: int = 0,
                 capacity_tokens: int = 0, max_sequences: int = 1, max_seq_tokens: int = 0):
        self._cache = _native.KvCache(n_layers, n_head_kv, d_k, d_v, _type_name(ktype, "ktype"),
                                      _type_name(vtype, "vtype"), page_rows, n_pages, capacity_tokens, max_sequences,
                                      max_seq_tokens)

    @property
    def config(self) -> dict:
        """The configuration in use (n_pages, capacity_tokens and max_seq_tokens resolved)."""
        return self._cache.config

    pages_free = property(lambda self: self._cache.pages_free, doc="Pages no sequence holds.")
    pages_total = property(lambda self: self._cache.pages_total, doc="Pages in the pool.")
    sequences_free = property(lambda self: self._cache.sequences_free, doc="Sequence slots not in use.")
    bytes = property(lambda self: self._cache.bytes, doc="Host bytes the cache owns.")

    def add_sequence(self) -> int:
        """A new empty sequence; MemoryError when max_sequences are live."""
        return self._cache.add_sequence()

    def remove(self, seq: int) -> None:
        """Removes a sequence, freeing every page no other sequence references."""
        self._cache.remove(seq)

    def fork(self, seq: int) -> int:
        """A new sequence with the same tokens, sharing its pages copy-on-write."""
        return self._cache.fork(seq)

    def truncate(self, seq: int, n_tokens: int) -> None:
        """Keeps the first n_tokens tokens (e.g. when speculative decoding rejects drafts)."""
        self._cache.truncate(seq, n_tokens)

    def length(self, seq: int) -> int:
        return self._cache.length(seq)

    def append(self, seq: int, k: Any, v: Any) -> int:
        """Appends tokens to every layer: k float32 ``[n_layers, n_tokens, n_head_kv, d_k]``, v likewise with d_v.
        Rows are quantized as ``quantize`` does (turbo rows zero-padded). Returns the first new position;
        MemoryError when pages run out."""
        return self._cache.append(seq, _float32(k, "k"), _float32(v, "v"))

    def k_row(self, seq: int, layer: int, pos: int, head: int) -> np.ndarray:
        """The stored bytes (uint8) of one K row."""
        return self._cache.row(seq, layer, pos, head, False)

    def v_row(self, seq: int, layer: int, pos: int, head: int) -> np.ndarray:
        """The stored bytes (uint8) of one V row."""
        return self._cache.row(seq, layer, pos, head, True)

    def checkpoint(self, seq: int) -> bytes:
        """The sequence serialized (versioned header, config fingerprint, checksum)."""
        return self._cache.checkpoint(seq)

    def restore(self, data: Any) -> int:
        """A new sequence holding a checkpoint's tokens; ValueError for damaged or foreign checkpoints."""
        return self._cache.restore(_bytes(data, "data"))

    def checkpoint_to_file(self, seq: int, path: Any) -> None:
        self._cache.checkpoint_to_file(seq, str(path))

    def restore_from_file(self, path: Any) -> int:
        return self._cache.restore_from_file(str(path))

    def attend(self, seqs: Iterable[int], q: Any, *, layer: int = 0, causal: bool = False,
               scale: Optional[float] = None, softcap: float = 0.0, alibi: float = 0.0, sinks: Any = None,
               window: Optional[int] = None, backend: str = "ref") -> np.ndarray:
        """Attention of one layer for a batch of sequences, reading K/V through their page tables.

        q: float32 ``[len(seqs), n_head_q, n_q, d_k]``; each sequence's keys are its own tokens (bottom-right
        alignment per sequence). Returns float32 ``[len(seqs), n_head_q, n_q, d_v]``."""
        scale_value, softcap_value, alibi_value, window_value = _options(scale, softcap, alibi, window)
        sinks_array = None if sinks is None else _float32(sinks, "sinks")
        return self._cache.attend([int(s) for s in seqs], _float32(q, "q"), int(layer), bool(causal), scale_value,
                                  softcap_value, alibi_value, sinks_array, window_value, _backend(backend))


def info() -> dict:
    """Version, backends (name -> available in this build), KV types and their traits, whether CUDA was built."""
    return _native.info()
