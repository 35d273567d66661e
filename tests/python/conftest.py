"""Shared fixtures: the kvflash CLI the Python results are compared with, and a helper to run it."""
import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _cli_path() -> pathlib.Path:
    # scripts/test.sh sets KVFLASH_CLI to the CLI of the build it just made; a plain `pytest` in a built checkout
    # finds build/bin/kvflash.
    given = os.environ.get("KVFLASH_CLI")
    return pathlib.Path(given).resolve() if given else REPO / "build" / "bin" / "kvflash"


@pytest.fixture(scope="session")
def cli() -> pathlib.Path:
    path = _cli_path()
    # A missing CLI is a failure, not a skip: these tests exist to compare with it.
    if not path.is_file():
        pytest.fail(f"kvflash CLI not found at {path}: build it (scripts/build.sh) or set KVFLASH_CLI")
    return path


@pytest.fixture
def run_cli(cli, tmp_path):
    """run_cli(*args) runs the CLI in tmp_path and returns the CompletedProcess; it must succeed."""

    def run(*args, expect_ok=True):
        done = subprocess.run([str(cli), *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        if expect_ok and done.returncode != 0:
            pytest.fail(f"kvflash {' '.join(map(str, args))} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    return run


def random_rows(rng: np.random.Generator, shape, outliers: bool = True) -> np.ndarray:
    """Float32 N(0, 1) data with a few large channels, as real keys have (so block scales vary)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if outliers and x.shape[-1] >= 4:
        cols = rng.choice(x.shape[-1], size=max(1, x.shape[-1] // 16), replace=False)
        x[..., cols] *= rng.uniform(6.0, 20.0, size=len(cols)).astype(np.float32)
    return x
