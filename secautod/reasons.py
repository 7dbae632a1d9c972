"""Why a running job was recovered (SPEC §9): the `reason` of errors, logs, webhooks, metrics."""

from __future__ import annotations

ENGINE_EXITED = "engine_exited"
HOST_REBOOTED = "host_rebooted"
LEASE_EXPIRED = "lease_expired"
ENGINE_STOPPED = "engine_stopped"
STALE = "stale"
REASONS = (ENGINE_EXITED, HOST_REBOOTED, LEASE_EXPIRED, ENGINE_STOPPED, STALE)
