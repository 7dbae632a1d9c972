"""Structured logging, configured in one place.

Every line goes to stderr: one JSON object per line when stderr is not a
terminal (systemd, containers), a readable console format when it is.
structlog loggers and stdlib loggers (APScheduler's included) share one
pipeline, so both come out in the same shape: `timestamp` (ISO 8601 UTC),
`level`, `logger`, `event` and the event's facts. Exceptions are rendered
as plain tracebacks, which never include local variables.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from secautod.output import is_terminal

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,  # the CLI's default: its own one-line errors suffice
}
# Chatty libraries are held at WARNING unless secautod itself logs at DEBUG.
_QUIET_LOGGERS = ("apscheduler",)
# APScheduler warnings that `scheduler.py` reports itself, from the same
# scheduler events, as `maintenance_run_missed` and `maintenance_run_skipped`
# (a reload that reschedules a running task set off both at once).
_FOLDED_APSCHEDULER_MESSAGES = (
    'Run time of job "%s" was missed by %s',
    'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
)


class _FoldedIntoOwnEvents(logging.Filter):
    """Drop the APScheduler records secautod logs as its own events."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _FOLDED_APSCHEDULER_MESSAGES


def get_logger(name: str) -> Any:
    """Return a logger named `name` (shown as the `logger` field).

    structlog itself is imported on the first log call, so commands that never
    log (the CLI's read commands) start faster.
    """
    return _LazyLogger(name)


class _LazyLogger:
    """Stands in for a structlog logger until it is first used.

    Until logging is configured (`configure_logging`, or an application's
    own `structlog.configure`), secautod is a library inside someone else's
    process (an engine, a read-only CLI command): its events then go to the
    standard `logging` module, where nothing below WARNING shows unless the
    application asks, and never to stdout, which belongs to the application.
    """

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        import structlog

        if not structlog.is_configured():
            return getattr(_library_logger(self._name), attribute)
        if self._logger is None:
            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attribute)


def _library_logger(name: str) -> Any:
    """Return a logger for secautod used as a library: `key=value` lines via `logging`."""
    import structlog

    return structlog.wrap_logger(
        logging.getLogger(name),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
    )


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send all logging to `stream` (stderr) as JSON or console lines at `level`.

    Safe to call again (on reload): the previous handler is replaced.
    """
    import structlog

    stream = stream or sys.stderr
    numeric_level = _LEVELS[level]
    use_json = fmt == "json" or (fmt == "auto" and not is_terminal(stream))
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any] = (
        [_lead_with_standard_keys, structlog.processors.JSONRenderer(sort_keys=False)]
        if use_json
        else [structlog.dev.ConsoleRenderer(colors=False)]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            _name_scheduler_events,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            *renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_FoldedIntoOwnEvents())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    quiet_level = (
        numeric_level if numeric_level <= logging.DEBUG else max(numeric_level, logging.WARNING)
    )
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet_level)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


# APScheduler logs prose; each line gets a snake_case event name (SPEC §5)
# and keeps the sentence as `detail`. The first needle found names it.
_SCHEDULER_EVENTS = (
    ("maximum number of running instances reached", "scheduler_run_skipped"),
    ("was missed by", "scheduler_run_missed"),
    ("raised an exception", "scheduler_job_failed"),
    ("executed successfully", "scheduler_job_completed"),
    ("Running job", "scheduler_job_started"),
    ("Added job", "scheduler_job_added"),
    ("Adding job tentatively", "scheduler_job_added"),
    ("Removed job", "scheduler_job_removed"),
    ("Scheduler started", "scheduler_started"),
    ("Scheduler has been shut down", "scheduler_stopped"),
    ("Looking for jobs to run", "scheduler_woke_up"),
    ("Next wakeup is due", "scheduler_sleeping"),
    ("No jobs; waiting", "scheduler_idle"),
)


def _name_scheduler_events(_logger: Any, _method: str, event_dict: Any) -> Any:
    """Give APScheduler's prose lines a snake_case event name, keeping the prose as `detail`."""
    record = event_dict.get("_record")
    if record is None or not record.name.startswith("apscheduler"):
        return event_dict
    message = str(event_dict.get("event", ""))
    event_dict["event"] = next(
        (name for needle, name in _SCHEDULER_EVENTS if needle in message), "scheduler_message"
    )
    event_dict["detail"] = message
    return event_dict


_STANDARD_KEYS = ("timestamp", "level", "logger", "event")


def _lead_with_standard_keys(_logger: Any, _method: str, event_dict: Any) -> Any:
    """Put timestamp, level, logger and event first, so lines read well raw."""
    leading = {key: event_dict.pop(key) for key in _STANDARD_KEYS if key in event_dict}
    leading.update(event_dict)
    return leading
