"""Fuzz the HTTP API with schemathesis: every operation of the served OpenAPI document, authenticated with an
admin key, at least 100 generated examples each, checked for server errors (HTTP 5xx) and for responses that
do not match the documented schema.

Starts `conjure serve` with one worker in a fresh home with CONJURE_REQUIRE_AUTH=true and a queue of at most 4
jobs (so most generated creates meet backpressure, HTTP 429, and the jobs that are admitted finish: the OpenAI
image endpoints wait for their job), then runs `st run`. Writes
benchmarks/results/fuzz.json and fuzz.md, and `fuzz_server_errors` into serving.json.

    python benchmarks/fuzz.py [--max-examples 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
# The progress stream of a job stays open until the job ends, and no worker runs here: every generated request to
# it would wait out the request timeout. Its job-id handling is get_job's, fuzzed through GET /v1/jobs/{job_id}.
EXCLUDE = r"^/v1/jobs/\{job_id\}/events$"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 180) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url + "/openapi.json", timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server at {url} was not ready after {timeout} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-examples", type=int, default=100)
    ap.add_argument("--checks", default="not_a_server_error,response_schema_conformance")
    ap.add_argument("--events", action="store_true", help="fuzz only the progress stream (request timeout 90 s; "
                    "results in fuzz-events.json)")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="conjure-fuzz-"))
    env = {**os.environ, "CONJURE_HOME": str(home), "CONJURE_REQUIRE_AUTH": "true", "CONJURE_QUEUE_MAX": "4",
           "CONJURE_RATE_LIMIT_PER_MIN": "0", "CONJURE_DAILY_QUOTA": "0"}
    key = subprocess.run([BIN / "conjure", "keys", "create", "fuzzer", "--role", "admin", "--rate", "0",
                          "--quota", "0"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    key = re.findall(r"cj_[A-Za-z0-9_\-]+|[A-Za-z0-9_\-]{32,}", key)[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([BIN / "conjure", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"))
    t0 = time.time()
    try:
        ready_s = wait_ready(url)
        report = home / "report.json"
        run = subprocess.run([BIN / "st", "run", f"{url}/openapi.json", "-H", f"Authorization: Bearer {key}",
                              "-n", str(args.max_examples), "-c", args.checks, "--request-timeout", "90" if args.events else "180",
                              "--include-path-regex" if args.events else "--exclude-path-regex", EXCLUDE,
                              "--generation-deterministic", "--report", "junit",
                              "--report-junit-path", str(home / "junit.xml")],
                             env=env, capture_output=True, text=True)
    finally:
        server.terminate()
        server.wait(30)
    out = run.stdout + run.stderr
    (home / "st.log").write_text(out)
    if run.returncode not in (0, 1):          # 1: failures found; anything else: the run itself did not finish
        raise SystemExit(f"schemathesis did not finish (exit {run.returncode}); its output is in {home / 'st.log'}")
    server_errors = len(re.findall(r"Server error", out))
    schema_violations = len(re.findall(r"Response violates schema", out))
    tail = out[out.find("=== WARNINGS"):] if "=== WARNINGS" in out else out[out.find("=== SUMMARY"):]
    summary = [line.rstrip() for line in tail.splitlines() if line.strip() and not line.startswith("  - JUnit")]
    ops = re.search(r"(\d+) selected", out)
    cases = re.search(r"(\d+) generated", out)
    result = {"command": "python benchmarks/fuzz.py" + (f" --max-examples {args.max_examples}"
                                                          if args.max_examples != 100 else ""),
              "schemathesis": subprocess.run([BIN / "st", "--version"], capture_output=True, text=True).stdout.strip(),
              "max_examples": args.max_examples, "checks": args.checks.split(","), "exit_code": run.returncode,
              "operations": int(ops.group(1)) if ops else None, "test_cases": int(cases.group(1)) if cases else None,
              "fuzz_server_errors": server_errors, "schema_violations": schema_violations,
              "ready_s": round(ready_s, 2), "wall_s": round(time.time() - t0, 1), "summary_lines": summary,
              "log_tail": out[-6000:]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.events:
        result["command"] += " --events"
        (RESULTS / "fuzz-events.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}, indent=1))
        return 0
    (RESULTS / "fuzz.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "fuzz.md").write_text("\n".join([
        "# API fuzzing (schemathesis)", "",
        f"Reproduce: `{result['command']}` ({result['wall_s']:.0f} s; {result['schemathesis']}). Every operation of "
        "/openapi.json, authenticated with an admin key, one worker, a queue of at most 4 jobs, "
        f"{args.max_examples} examples per operation at most, checks {', '.join(result['checks'])}. Excluded: "
        "the progress stream GET /v1/jobs/{job_id}/events (open until its job ends; see the script).", "",
        "| operations | test cases | server errors (5xx) | schema violations | exit code |", "|---|---|---|---|---|",
        f"| {result['operations']} | {result['test_cases']} | {server_errors} | {schema_violations} | "
        f"{run.returncode} |", "", "schemathesis's warnings and summary:", "", "```", *summary, "```", ""]))
    serving = RESULTS / "serving.json"
    if serving.exists():
        data = json.loads(serving.read_text())
        data["fuzz_server_errors"] = server_errors
        data["fuzz_note"] = "benchmarks/fuzz.py (see fuzz.md)"
        serving.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
