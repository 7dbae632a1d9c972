"""Property-based bad input: random configs, damaged import files, arbitrary API values, hostile filters."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import run_cli, write_config
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from secautod import Job, JobNotFoundError, JobStatus, JobStore
from secautod.config import load_config, parse_config
from secautod.errors import ConfigError, ImportFormatError, InvalidJobError
from secautod.legacy_import import import_legacy_file

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KNOWN_KEYS = [
    "data_directory", "storage", "jobs", "webhooks", "logging", "shutdown_timeout_seconds",
    "synchronous", "busy_timeout_seconds", "database_file", "retention_days", "cleanup_interval",
    "backup_enabled", "backup_interval", "backup_keep", "backup_directory", "retry_delay_seconds",
    "url", "secret_env", "timeout_seconds", "level", "format", "webhook_delivery",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["full", "normal", "info", "json", "http://h/x", "data", "1.5", "true"]),
)
keys = st.one_of(st.sampled_from(KEYS := KNOWN_KEYS), st.text(max_size=12))
yaml_documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@SETTINGS
@given(document=yaml_documents)
def test_any_yaml_document_gives_a_config_or_one_clear_line(workdir: Path, document: Any) -> None:
    """Random YAML structures never crash config loading: a Config, or a one-line ConfigError."""
    try:
        config = parse_config(document, workdir / "config.yaml", {})
    except ConfigError as exc:
        message = str(exc)
        assert message
        assert "\n" not in message
        assert exc.exit_status == 78
    else:
        assert config.jobs.backup_keep >= 1
        assert config.jobs.retention > timedelta(0)
    assert sorted(path.name for path in workdir.iterdir()) == []  # validation created nothing


@SETTINGS
@given(text=st.text(max_size=300))
def test_any_text_file_gives_a_config_or_one_clear_line(workdir: Path, text: str) -> None:
    """Arbitrary text (mostly invalid YAML) is a one-line ConfigError, never a traceback."""
    path = workdir / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    finally:
        path.unlink()


def test_random_config_through_the_real_cli_exits_78(tmp_path: Path) -> None:
    """A sample of invalid configs through the installed command exits 78 with one line."""
    for text in [
        "jobs: {retention_days: [1]}",
        "{",
        "logging: {level: 7}",
        "storage: {synchronous: off}",
        "!!binary x",
    ]:
        config = tmp_path / "config.yaml"
        config.write_text(text)
        result = run_cli("check", "--config", str(config))
        assert result.returncode == 78, (text, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=15,
)


def legacy_job(job_id: str, playbook: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": "completed",
        "playbook": playbook,
        "context": {},
        "results": None,
        "error": "",
        "created_at": "2026-01-21T10:00:00Z",
    }


@SETTINGS
@given(
    jobs=st.dictionaries(st.text(min_size=1, max_size=8), json_values, min_size=1, max_size=5),
    cut=st.floats(min_value=0, max_value=1),
    flip=st.integers(min_value=0, max_value=10**6),
    mode=st.sampled_from(["truncate", "mutate"]),
)
def test_damaged_import_files_import_all_or_nothing(
    workdir: Path, jobs: dict[str, Any], cut: float, flip: int, mode: str
) -> None:
    """A truncated or mutated legacy file imports completely or not at all, with a located error."""
    text = json.dumps({job_id: legacy_job(job_id, playbook) for job_id, playbook in jobs.items()})
    if mode == "truncate":
        damaged = text[: int(len(text) * cut)]
    else:
        position = flip % len(text)
        damaged = text[:position] + chr(33 + flip % 90) + text[position + 1 :]
    source = workdir / "legacy.json"
    source.write_text(damaged)
    database = workdir / "import.db"
    try:
        with JobStore(database) as store:
            try:
                report = import_legacy_file(store, source)
            except ImportFormatError as exc:
                assert "nothing was imported" in str(exc) or "cannot read" in str(exc)
                assert store.get_stats().total == 0
            else:
                reference = json.loads(damaged)  # what a whole-file parser sees
                assert report.imported == len(reference) == store.get_stats().total
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)


identifiers = st.text(alphabet=st.characters(blacklist_categories=()), min_size=0, max_size=20)
statuses = st.one_of(st.sampled_from([status.value for status in JobStatus]), st.text(max_size=10))
payloads = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(alphabet=st.characters(blacklist_categories=())),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(alphabet=st.characters(blacklist_categories=()), max_size=5),
            children,
            max_size=4,
        ),
    ),
    max_leaves=15,
)


@pytest.fixture(scope="module")
def shared_store(workdir: Path) -> Iterator[JobStore]:
    with JobStore(workdir / "api.db") as store:
        yield store


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value) or math.isinf(value)
    if isinstance(value, list):
        return any(_has_nan(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nan(item) for item in value.values())
    return False


@SETTINGS
@given(job_id=identifiers, status=statuses, playbook=payloads, context=payloads, results=payloads)
def test_api_round_trips_exactly_or_refuses_clearly(
    shared_store: JobStore, job_id: str, status: str, playbook: Any, context: Any, results: Any
) -> None:
    """Any id, status and JSON payload either round-trips exactly or raises InvalidJobError, storing nothing."""
    created = datetime(2026, 1, 21, 10, 0, 0, 123000, tzinfo=UTC)
    try:
        job = Job(
            id=job_id,
            status=status,
            playbook=playbook,
            context=context,
            results=results,
            created_at=created,
        )  # type: ignore[arg-type]
        shared_store.save_job(job)
    except InvalidJobError as exc:
        assert str(exc)
        try:
            shared_store.load_job(job_id)
        except InvalidJobError:
            return  # the id itself cannot be stored (an unpaired surrogate)
        return
    assert not _has_nan(playbook)
    assert not _has_nan(context)
    assert not _has_nan(results)
    loaded = shared_store.load_job(job_id)
    assert loaded == job
    assert loaded is not None
    assert json.dumps(loaded.playbook, sort_keys=True) == json.dumps(playbook, sort_keys=True)


hostile = st.one_of(
    st.sampled_from([
        "'; DROP TABLE jobs; --",
        "x' OR '1'='1",
        "pending' --",
        "%",
        "_",
        "\x00",
        "pending\x00",
        "); DELETE FROM jobs; (",
        "' UNION SELECT * FROM schema_migrations --",
    ]),
    st.text(max_size=30),
)  # fmt: skip


@pytest.fixture(scope="module")
def canary_store(workdir: Path) -> Iterator[JobStore]:
    """A store holding one job only, so no hostile string can be a real id."""
    with JobStore(workdir / "canary.db") as store:
        yield store


@SETTINGS
@given(value=hostile)
def test_hostile_filter_text_is_always_bound(canary_store: JobStore, value: str) -> None:
    """Filter values are bound, never SQL: a bad value is an error, and the table is untouched."""
    assume(value not in {status.value for status in JobStatus})
    canary_store.save_job(
        Job(
            id="canary",
            status=JobStatus.PENDING,
            playbook={},
            context={},
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    before = canary_store.get_stats().total
    with pytest.raises(InvalidJobError):
        canary_store.list_jobs(status=value)
    if value != "canary":
        with pytest.raises(JobNotFoundError):
            canary_store.list_jobs(after=value)
        assert canary_store.load_job(value) is None
        assert canary_store.delete_job(value) is False
    assert canary_store.get_stats().total == before
    assert canary_store.get_job("canary").status is JobStatus.PENDING


def test_hostile_ids_through_the_cli(tmp_path: Path) -> None:
    """The CLI treats an injection attempt as an unknown id (66) and the table survives."""
    config = write_config(tmp_path)
    JobStore(tmp_path / "data" / "jobs.db").close()
    for value in ["'; DROP TABLE jobs; --", "x' OR '1'='1"]:
        result = run_cli("jobs", "show", value, "--config", str(config))
        assert result.returncode == 66
        assert run_cli("jobs", "delete", value, "--config", str(config)).returncode == 66
    assert run_cli("jobs", "stats", "--config", str(config)).returncode == 0


def test_yaml_bomb_is_refused_without_blowing_up(tmp_path: Path) -> None:
    """A billion-laughs style YAML document is rejected quickly as a config error."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for level in range(1, 9):
        lines.append(
            f"{chr(97 + level)}: &{chr(97 + level)} [*{chr(96 + level)},*{chr(96 + level)},*{chr(96 + level)},*{chr(96 + level)}]"
        )
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(path)
    assert yaml.safe_load("a: 1") == {"a": 1}
