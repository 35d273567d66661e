"""kvflash.plan returns what `kvflash plan --json` prints: the same keys and values."""
import json
import struct

import pytest

import kvflash

CASES = [
    dict(model="llama3-8b", ctx=8192),
    dict(model="llama3-8b", ctx=32768, batch=4, ktype="q8_0", vtype="q4_0", budget="16GiB"),
    dict(model="llama3-70b", ctx=131072, ktype="turbo3", vtype="turbo3", budget=80 * 10**9, other="40GB"),
    dict(model="qwen2.5-7b", ctx=25000, batch=2, ubatch=128, budget="24GiB", backend="ref"),
    dict(model="gemma-3-12b", ctx=65536, ktype="q4_0", vtype="f16", budget="12GiB", backend="cpu"),
    dict(model="gemma-4-class", ctx=4096, budget="1GiB", backend="cuda"),
    dict(model="deepseek-v3", ctx=16384, ktype="q8_0", vtype="q4_0", budget="100GiB"),  # MLA: V is K's view
    dict(model="phi-3-mini", budget="2.5GiB", ktype="f16", vtype="q8_0"),  # ctx: the model's own
]

FLAGS = {"model": "--model", "gguf": "--gguf", "ctx": "--ctx", "batch": "--batch", "ktype": "-ctk", "vtype": "-ctv",
         "budget": "--budget", "ubatch": "--ubatch", "other": "--other", "backend": "--backend"}


def cli_plan(run_cli, expect_ok=True, **kwargs):
    args = ["plan", "--json"]
    for key, value in kwargs.items():
        args += [FLAGS[key], str(value)]
    done = run_cli(*args, expect_ok=expect_ok)
    return json.loads(done.stdout) if done.returncode == 0 else done


@pytest.mark.parametrize("index", range(len(CASES)))
def test_plan_equals_the_cli_json(index, run_cli):
    case = CASES[index]
    want = cli_plan(run_cli, expect_ok=False, **case)
    kwargs = dict(case)
    model = kwargs.pop("model")
    if not isinstance(want, dict):
        # A backend without kernels in this build: the CLI's one error line is the exception's message.
        message = want.stderr.strip().split("error: ", 1)[1]
        with pytest.raises(ValueError) as info:
            kvflash.plan(model, **kwargs)
        assert str(info.value) == message
        return
    got = kvflash.plan(model, **kwargs)
    assert got == want
    # The keys scripts rely on, with their meaning.
    assert got["total_bytes"] == got["kv_cache_bytes"] + got["workspace_bytes"] + got["other_bytes"]
    assert set(got["max_context"]) == {t["name"] for t in kvflash.info()["types"]}
    if "budget" in case:
        assert got["fits"] == (got["total_bytes"] <= got["budget_bytes"])


def test_quantized_caches_never_plan_more_than_f16():
    rows = {r["type"]: r for r in kvflash.plan("llama3-8b", ctx=131072)["comparison"]}
    for t in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "turbo2", "turbo3", "turbo4"):
        assert rows[t]["total_bytes"] <= rows["f16"]["total_bytes"], t


def write_gguf(path, fields):
    """A GGUF v3 file with metadata only (no tensors): keys as strings, values u32 or strings."""
    out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, 0, len(fields))

    def string(s):
        return struct.pack("<Q", len(s.encode())) + s.encode()

    for key, value in fields.items():
        out += string(key)
        if isinstance(value, str):
            out += struct.pack("<I", 8) + string(value)  # GGUF_TYPE_STRING
        else:
            out += struct.pack("<II", 4, value)  # GGUF_TYPE_UINT32
    path.write_bytes(bytes(out))


def test_plan_reads_a_gguf_like_the_cli(run_cli, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, {
        "general.architecture": "llama",
        "general.name": "tiny-llama",
        "llama.block_count": 6,
        "llama.context_length": 4096,
        "llama.embedding_length": 1024,
        "llama.attention.head_count": 16,
        "llama.attention.head_count_kv": 4,
    })
    want = cli_plan(run_cli, gguf=path, budget="64MiB", ktype="q8_0", vtype="q8_0")
    got = kvflash.plan(gguf=path, budget="64MiB", ktype="q8_0", vtype="q8_0")
    assert got == want
    assert got["layers"] == 6 and got["context"] == 4096 and got["model"] == "tiny-llama"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(model="llama-9"), ValueError, "llama-9"),
        (dict(), ValueError, "exactly one of model and gguf"),
        (dict(model="llama3-8b", ctx=0), ValueError, "ctx = 0"),
        (dict(model="llama3-8b", batch=0), ValueError, "batch = 0"),
        (dict(model="llama3-8b", budget="12 parsecs"), ValueError, "unknown unit"),
        (dict(model="llama3-8b", budget="lots"), ValueError, "not a size"),
        (dict(model="llama3-8b", budget=True), TypeError, "bool"),
        (dict(model="llama3-8b", ktype="q9"), ValueError, "unknown KV type"),
        (dict(model="llama3-8b", backend="tpu"), ValueError, "unknown backend"),
        (dict(gguf="/nonexistent/model.gguf"), OSError, "model.gguf"),
    ],
)
def test_bad_plans_raise_with_the_library_message(kwargs, error, message):
    model = kwargs.pop("model", None)
    with pytest.raises(error, match=message):
        kvflash.plan(model, **kwargs)


def test_a_corrupt_gguf_is_a_value_error(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1_000_000_000_000))
    with pytest.raises(ValueError):
        kvflash.plan(gguf=path)
