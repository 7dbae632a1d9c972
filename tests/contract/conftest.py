"""The store contract: every backend passes these tests (SPEC §2).

`make_store` is parametrised by backend; a new backend is added by adding
its name to `BACKENDS` and a branch to `open_backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from secautod import JobStore

BACKENDS = ["sqlite"]


def open_backend(backend: str, tmp_path: Path, **options: Any) -> JobStore:
    """Open a fresh, empty store of `backend` for one test."""
    if backend == "sqlite":
        return JobStore(tmp_path / "data" / "jobs.db", **options)
    raise ValueError(f"unknown backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., JobStore]]:
    """Open stores of the backend under test; all are closed afterwards."""
    stores: list[JobStore] = []

    def factory(**options: Any) -> JobStore:
        store = open_backend(request.param, tmp_path, **options)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()
