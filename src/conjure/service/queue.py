"""The job queue: Huey carrying job ids only, serialised as JSON (no pickle on the wire or on disk).

`SqliteHuey` (a file under home) is the embedded default; `RedisHuey` (priority-aware storage) runs the same
code across many worker hosts when `settings.queue_url` is a redis:// URL. Delivery is at-least-once: a
message may arrive twice or for a job that has ended, and the worker's conditional claim makes that a no-op.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Callable

from huey import Huey
from huey.registry import Message
from huey.serializer import Serializer

from conjure.config import Settings

TASK_NAME = "conjure.run_job"
_SIMPLE_FIELDS = ("id", "name", "retries", "retry_delay", "retry_backoff", "priority", "timeout")


class JsonSerializer(Serializer):
    """Huey messages as JSON: only a job id string travels, so no pickle is needed anywhere."""

    def _serialize(self, message: Message) -> bytes:
        if message.on_complete or message.on_error or message.chord_config or message.expires:
            raise ValueError("conjure's queue carries single job-id tasks only (no pipelines or chords)")
        if any(not isinstance(a, str) for a in message.args) or message.kwargs:
            raise ValueError("conjure's queue carries a job id string only; the spec lives in the job record")
        d = {k: getattr(message, k) for k in _SIMPLE_FIELDS}
        d["args"] = list(message.args)
        d["eta"] = message.eta.isoformat() if message.eta else None
        return json.dumps(d).encode()

    def _deserialize(self, data: bytes) -> Message:
        d = json.loads(bytes(data).decode())
        eta = d.pop("eta")
        eta = datetime.datetime.fromisoformat(eta) if eta else None
        return Message(eta=eta, args=tuple(d.pop("args")), kwargs={}, **d)


@dataclass
class JobQueue:
    """A small interface over Huey: put a job id (with priority and delay), take the next one."""

    huey: Huey
    task: Callable

    def put(self, job_id: str, priority: int = 0, delay_s: float = 0.0) -> None:
        sig = self.task.s(job_id, priority=priority, delay=delay_s if delay_s > 0 else None)
        if delay_s > 0:
            self.huey.add_schedule(sig)   # retries with backoff wait in Huey's schedule
        else:
            self.huey.enqueue(sig)

    def take(self) -> str | None:
        """The next job id due (highest priority first, then oldest), or None when the queue is empty."""
        for sig in self.huey.read_schedule():   # move due retries into the queue first
            self.huey.enqueue(sig)
        sig = self.huey.dequeue()
        return sig.args[0] if sig is not None else None

    def pending(self) -> int:
        return self.huey.pending_count()


def make_queue(settings: Settings) -> JobQueue:
    """The queue chosen by `settings.queue_url` ("" = SqliteHuey file under home)."""
    url = settings.queue_url
    if not url:
        from huey import SqliteHuey
        settings.home.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey("conjure", filename=str(settings.home / "queue.db"), results=False,
                          serializer=JsonSerializer())
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from huey import PriorityRedisHuey
        huey = PriorityRedisHuey("conjure", url=url, results=False, serializer=JsonSerializer())
    else:
        raise ValueError(f"CONJURE_QUEUE_URL '{url}' is not supported: leave it empty for the embedded "
                         "SQLite queue or give a redis:// URL")

    @huey.task(name=TASK_NAME)
    def run_job_task(job_id: str) -> None:   # workers take ids with JobQueue.take; this only names the task
        raise RuntimeError("conjure workers execute jobs through conjure.service.worker, not Huey's consumer")
    return JobQueue(huey, run_job_task)
