"""Prometheus metrics: request counts and latencies from this process; queue depth, job states, job
latency, compute seconds and live workers read from the job store at scrape time (workers are other
processes, so the store is the one place that sees them all)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from conjure.service.jobs import STAT_FIELDS, Job, JobStatus, WorkerRecord, WorkerStats, status_counts

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
RECENT_JOBS = 1000
STAT_DOCS = {   # worker totals (WorkerStats) -> metric name (without _total) and help
    "cache_hits": ("model_cache_hits", "Model cache lookups that found the pipeline loaded, all workers"),
    "cache_misses": ("model_cache_misses", "Model cache lookups that loaded the pipeline, all workers"),
    "cache_evictions": ("model_cache_evictions", "Pipelines evicted beyond the memory budget, all workers"),
    "batches": ("sampling_batches", "Sampling runs (a job sampled alone is a batch of one), all workers"),
    "batched_jobs": ("sampled_jobs", "Jobs sampled, counted once per sampling run, all workers"),
    "sampled_images": ("sampled_images", "Images sampled, all workers"),
    "sample_s": ("sample_seconds", "Seconds in sampling loops, all workers"),
}


class StoreCollector:
    def __init__(self, sessions):
        self.sessions = sessions

    def collect(self):
        with self.sessions() as s:
            counts = status_counts(s)
            done = s.execute(select(Job.created_at, Job.finished_at, Job.compute_s)
                             .where(Job.status == JobStatus.SUCCEEDED.value)
                             .order_by(Job.finished_at.desc()).limit(RECENT_JOBS)).all()
            workers = s.scalars(select(WorkerRecord).where(WorkerRecord.last_seen > time.time() - 30)).all()
            totals = s.execute(select(*[func.coalesce(func.sum(getattr(WorkerStats, k)), 0) for k in STAT_FIELDS])).one()
        states = GaugeMetricFamily("conjure_jobs", "Jobs in the store by status", labels=["status"])
        for st in JobStatus:
            states.add_metric([st.value], counts.get(st.value, 0))
        yield states
        yield GaugeMetricFamily("conjure_queue_depth", "Jobs waiting to run", value=counts.get("queued", 0))
        yield GaugeMetricFamily("conjure_workers", "Workers seen in the last 30 s", value=len(workers))
        yield GaugeMetricFamily("conjure_worker_utilisation", "Share of live workers running a job",
                                value=(sum(1 for w in workers if w.busy) / len(workers)) if workers else 0.0)
        yield _histogram("conjure_job_latency_seconds", "Creation to completion, recent succeeded jobs",
                         [f - c for c, f, _ in done])
        yield _histogram("conjure_job_compute_seconds", "Worker seconds per job, recent succeeded jobs",
                         [x for _, _, x in done])
        for name, value in zip(STAT_FIELDS, totals):
            yield CounterMetricFamily(f"conjure_{STAT_DOCS[name][0]}", STAT_DOCS[name][1], value=float(value))


def _histogram(name: str, doc: str, values: list[float]) -> HistogramMetricFamily:
    buckets, acc = [], 0
    for edge in LATENCY_BUCKETS:
        acc = sum(1 for v in values if v <= edge)
        buckets.append((str(edge), acc))
    buckets.append(("+Inf", len(values)))
    h = HistogramMetricFamily(name, doc)
    h.add_metric([], buckets, sum(values))
    return h


class Metrics:
    """One registry per app, so that tests can run several apps in one process."""

    def __init__(self, sessions):
        self.registry = CollectorRegistry()
        self.requests = Counter("conjure_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("conjure_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry)
        self.jobs_created = Counter("conjure_jobs_created", "Jobs created through this server", ["api"],
                                    registry=self.registry)
        self.registry.register(StoreCollector(sessions))
