"""secautod: the job store supervisor of the SecAuto SOAR engine.

The public Python API is the job store::

    from secautod import JobStore, Job, JobStatus
"""

from secautod.errors import (
    ConfigError,
    InvalidJobError,
    JobNotFoundError,
    LockHeldError,
    SecautodError,
    SessionLostError,
    StoreError,
)
from secautod.jobs import Job, JobStats, JobStatus
from secautod.store import JobStore

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InvalidJobError",
    "Job",
    "JobNotFoundError",
    "JobStats",
    "JobStatus",
    "JobStore",
    "LockHeldError",
    "SecautodError",
    "SessionLostError",
    "StoreError",
    "__version__",
]
