"""The store contract: every backend passes these tests (SPEC §2).

`make_store` is parametrised by backend; a new backend is added by adding
its name to `BACKENDS` and a branch to `open_backend`. PostgreSQL tests use
the server at 127.0.0.1:5432 (`tests/pg_server.py`), each in a schema of its
own that is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import scratch_schema

from secautod import JobStore

BACKENDS = ["sqlite", "postgresql"]


def open_backend(backend: str, tmp_path: Path, location: str | None, **options: Any) -> JobStore:
    """Open a fresh, empty store of `backend` for one test (`location`: its PostgreSQL URL)."""
    if backend == "sqlite":
        return JobStore(tmp_path / "data" / "jobs.db", **options)
    if backend == "postgresql" and location is not None:
        return JobStore(location, **options)
    raise ValueError(f"unknown backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., JobStore]]:
    """Open stores of the backend under test; all are closed (and their schema dropped) afterwards."""
    stores: list[JobStore] = []
    with scratch_schema(enabled=request.param == "postgresql") as location:

        def factory(**options: Any) -> JobStore:
            store = open_backend(request.param, tmp_path, location, **options)
            stores.append(store)
            return store

        yield factory
        for store in stores:
            store.close()
