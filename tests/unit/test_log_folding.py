"""APScheduler's warnings that secautod reports as its own events are not logged twice."""

from __future__ import annotations

import io
import json
import logging

from secautod.log import configure_logging


def test_apscheduler_missed_and_skipped_warnings_are_folded_into_secautods_events() -> None:
    """'missed by' and 'skipped: maximum number of running instances' go; other warnings stay."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        executor = logging.getLogger("apscheduler.executors.default")
        scheduler = logging.getLogger("apscheduler.scheduler")
        executor.warning('Run time of job "%s" was missed by %s', "cleanup", "0:00:03")
        scheduler.warning(
            'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
            "backup",
            1,
        )
        scheduler.warning("Something else went wrong")
    finally:
        configure_logging("critical", "json", io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["detail"]) for line in lines] == [
        ("scheduler_message", "Something else went wrong")
    ]
