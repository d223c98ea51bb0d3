"""The generation service: HTTP API (native and OpenAI-compatible), job records, queue, workers, storage.

Layout (one concept per module): `jobs` (JobStatus, the job record, every state change), `queue` (Huey,
carrying job ids only), `worker` (leases, heartbeats, retries; `run_job` is the one call into a pipeline),
`storage` (local folder or S3), `signing` (expiring output URLs), `auth` (API keys), `app` (FastAPI
factory), `routes/` (one module per area), `schemas`, `deps`. Nothing runs at import.
"""
