"""Structured logs: one JSON object per line, with the `extra` fields a call site passes."""

from __future__ import annotations

import json
import logging
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


PROBES = ("/healthz", "/readyz", "/metrics")


class QuietProbes(logging.Filter):
    """Drops the access line of a probe that succeeded (/healthz, /readyz, /metrics answering 2xx): a load
    balancer or Prometheus asking every few seconds would otherwise bury the lines that matter. A probe that
    fails (a 503 from /readyz) is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 5:                     # uvicorn's (client, method, path, http version, status)
            path, status = str(args[2]).split("?", 1)[0], args[4]
            if path in PROBES and isinstance(status, int) and 200 <= status < 300:
                return False
        return True


def setup_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for conjure's loggers and uvicorn's; successful probes are not access-logged."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("conjure", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    access = logging.getLogger("uvicorn.access")
    access.filters[:] = [f for f in access.filters if not isinstance(f, QuietProbes)] + [QuietProbes()]
