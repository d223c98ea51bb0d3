"""Retention: finished jobs (and their files) older than `CONJURE_RETENTION_DAYS` are deleted by a periodic sweep
in the server. Charges stay (they are the quota's record of what was used); audit entries stay (append-only)."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import delete

from conjure.service.jobs import Job, expired_finished

log = logging.getLogger("conjure.retention")


def sweep(sessions, storage, retention_days: float, now: float | None = None) -> list[str]:
    """Delete finished jobs that ended more than `retention_days` ago, files first; returns their ids."""
    if retention_days <= 0:
        return []
    before = (time.time() if now is None else now) - retention_days * 86400.0
    removed = []
    while True:
        with sessions() as s:
            ids = expired_finished(s, before)
        if not ids:
            break
        for job_id in ids:
            storage.delete_prefix(f"jobs/{job_id}/")   # a file left by a crash here is swept again next time
        with sessions() as s, s.begin():
            s.execute(delete(Job).where(Job.id.in_(ids), Job.finished_at < before))
        removed += ids
    if removed:
        log.info("retention sweep", extra={"deleted": len(removed), "retention_days": retention_days})
    return removed


class RetentionSweeper:
    """A daemon thread that sweeps at start and then every `every_s` seconds, until stopped."""

    def __init__(self, sessions, storage, retention_days: float, every_s: float):
        self.args = (sessions, storage, retention_days)
        self.every_s = max(every_s, 1.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="conjure-retention")

    def start(self) -> None:
        if self.args[2] > 0:
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                sweep(*self.args)
            except Exception:   # a store or storage hiccup: the next sweep tries again
                log.exception("retention sweep failed")
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
