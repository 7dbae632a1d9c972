"""Scraping a daemon's /metrics in tests: samples keyed by name and labels."""

from __future__ import annotations

import time
import urllib.request

from harness import wait_until
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> Samples:
    """GET /metrics from the daemon on 127.0.0.1:`port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def settled(port: int, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until `name{labels}` shows `expected` (figures refresh in the background)."""
    return wait_until(
        lambda: (
            (samples := scrape(port)) and value(samples, name, **labels) == expected and samples
        ),
        what=f"{name}{labels} == {expected}",
    )


def fresh(port: int) -> Samples:
    """Scrape until the figures were read after this call (so they show what is stored now)."""
    asked = time.time()
    return wait_until(
        lambda: (
            (samples := scrape(port))
            and (value(samples, "secautod_figures_timestamp_seconds") or 0) > asked
            and samples
        ),
        what="figures read after now",
    )
