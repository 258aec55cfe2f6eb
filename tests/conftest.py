"""Shared fixtures: the offline data in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if SHARED_DATA.is_dir():  # the library reads real configs/tokenizer only from an explicit setting
    os.environ.setdefault("JAMSPOTTER_REFERENCE_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that need it skip with a reason when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for the whole run: the tests' tiny models and CNNs run fastest on one,
    and on a busy 2-core machine two spinning OpenMP threads ran them 5-50x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def umask_027() -> Iterator[None]:
    """Run a test under umask 027 (files 640, folders 750 when written with the umask honoured)."""
    old = os.umask(0o027)
    yield
    os.umask(old)


def modes(root: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of a folder and everything below it."""
    return {("dir" if p.is_dir() else "file", p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]}
