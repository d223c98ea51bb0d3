"""Serving benchmark: a closed-loop load generator on loopback against a real `conjure serve` (conjure-tiny).

Arms: dynamic batching off (CONJURE_MAX_BATCH=1) and on (CONJURE_MAX_BATCH=8), the same precision in both.
At each concurrency c (1, 4, 16), c clients each create a job, wait for it to end and create the next, until
the round's job count is done (bounded in count and in time). Latency is the server's own creation-to-finish
time of each job; end-to-end throughput is jobs per wall second of the round; the sampling stage's throughput
is images per second spent in sampling loops, read from /metrics (conjure_sampled_images_total and
conjure_sample_seconds_total) before and after the round. Each round repeats; medians are reported.

Then a crash test: 200 jobs queued at once, the one worker SIGKILLed twice and the server SIGKILLed and
restarted once; every job must succeed once (one committed output set, one charge, one audit entry per image).

    .venv/bin/python benchmarks/serving.py            # writes benchmarks/results/serving.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = ("succeeded", "failed", "cancelled", "refused")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`conjure serve` with one worker child in its own process group (so a crash test can kill it all)."""

    def __init__(self, home: Path, max_batch: int, extra_env: dict | None = None):
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CONJURE_HOME": str(home), "CONJURE_MAX_BATCH": str(max_batch),
                    "CONJURE_QUEUE_MAX": "1000", "CONJURE_LEASE_S": "6", "CONJURE_DAILY_QUOTA": "1000000",
                    "PYTHONPATH": str(ROOT / "src"), **(extra_env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait for /readyz; returns seconds from launch to ready."""
        t0 = time.monotonic()
        log = open(self.home / "serve.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "conjure.cli", "serve", "--port", str(self.port),
                                      "--workers", "1"], env=self.env, stdout=log, stderr=log,
                                     start_new_session=True)
        while time.monotonic() - t0 < timeout:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"conjure serve exited with {self.proc.returncode}; see {self.home}/serve.log")
            time.sleep(0.1)
        raise TimeoutError(f"conjure serve was not ready after {timeout} s")

    def worker_pids(self) -> list[int]:
        import psutil
        return [c.pid for c in psutil.Process(self.proc.pid).children() if "worker" in " ".join(c.cmdline())]

    def kill(self) -> None:
        """SIGKILL the server and its workers (a crash)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def closed_loop(url: str, concurrency: int, jobs: int, spec: dict, deadline: float, tag: str) -> dict:
    """c clients, each: create a job, poll until it ends, repeat; `jobs` in all or until `deadline`."""
    results, lock, counter = [], threading.Lock(), iter(range(jobs))

    def client():
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = {**spec, "prompt": f"{PROMPTS[i % len(PROMPTS)]} {tag}{i}", "seed": i,
                        "guidance": 3.0 + i % 5}
                r = http.post("/v1/jobs", json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"create answered {r.status_code}: {r.text}")
                job_id = r.json()["id"]
                while time.monotonic() < deadline + 120:
                    job = http.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] in TERMINAL:
                        with lock:
                            results.append(job)
                        break
                    time.sleep(0.25)   # latency is the server's own timestamps; polling only costs CPU
    s0 = (metric(url, "conjure_sampled_images_total"), metric(url, "conjure_sample_seconds_total"))
    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    time.sleep(0.3)
    s1 = (metric(url, "conjure_sampled_images_total"), metric(url, "conjure_sample_seconds_total"))
    ok = [j for j in results if j["status"] == "succeeded"]
    lat = sorted(j["finished_at"] - j["created_at"] for j in ok)
    images = s1[0] - s0[0]
    return {"jobs": len(results), "succeeded": len(ok), "wall_s": wall,
            "throughput_jobs_per_s": len(ok) / wall if wall else 0.0,
            "sample_images_per_s": images / (s1[1] - s0[1]) if s1[1] > s0[1] else 0.0,
            "p50_s": pct(lat, 50), "p95_s": pct(lat, 95), "p99_s": pct(lat, 99)}


PROMPTS = ["a red apple", "a yellow sun", "a blue car", "a green tree", "a yellow star", "a pizza slice",
           "a rocket", "a heart", "a house with a red roof", "a cup of coffee"]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = (len(values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def median_of(runs: list[dict]) -> dict:
    """Medians over the runs that completed jobs (a run cut off by the time bound before any job ended is
    kept in `runs` but left out here)."""
    done = [r for r in runs if r["succeeded"]] or runs
    return {k: statistics.median(r[k] for r in done) for k in runs[0]}


def load_arms(args, spec: dict, arm_budget_s: float) -> tuple[dict, list[float]]:
    """Both arms, each bounded by its own time budget (so that a slow first arm cannot starve the second)."""
    arms, ready = {}, []
    for arm, max_batch in (("off", 1), ("on", args.max_batch)):
        deadline = time.monotonic() + arm_budget_s
        with tempfile.TemporaryDirectory(prefix=f"conjure-serving-{arm}-") as home:
            server = Server(Path(home), max_batch, {"CONJURE_THREADS": str(args.threads)} if args.threads else None)
            try:
                ready.append(server.start())
                print(f"[{arm}] ready in {ready[-1]:.1f} s", flush=True)
                # warm-up: every U-Net shape the arm will run is traced once (batches of 1 to max_batch images
                # with batching on, batches of 1 without)
                closed_loop(server.url, 16, args.warmup if max_batch > 1 else 2, spec, deadline, "warm")
                arms[arm] = {}
                for c, n in ((1, args.jobs_c1), (4, args.jobs_c4), (16, args.jobs_c16)):
                    repeats = args.repeats_c16 if c == 16 else args.repeats
                    runs = [closed_loop(server.url, c, n, spec, deadline, f"c{c}r{r}-") for r in range(repeats)]
                    arms[arm][f"c{c}"] = {**median_of(runs), "runs": runs}
                    print(f"[{arm}] c{c}: {json.dumps(arms[arm][f'c{c}'], default=float)[:300]}", flush=True)
            finally:
                server.stop()
    return arms, ready


def load_interleaved(args, spec: dict, budget_s: float) -> tuple[dict, list[float]]:
    """Both arms' servers up at once (an idle one only polls its store), rounds alternating off, on, off, on, ...
    so that both arms see the same drift in a shared machine's load."""
    deadline = time.monotonic() + budget_s
    homes = {arm: tempfile.TemporaryDirectory(prefix=f"conjure-serving-{arm}-") for arm in ("off", "on")}
    servers = {"off": Server(Path(homes["off"].name), 1), "on": Server(Path(homes["on"].name), args.max_batch)}
    arms, ready = {"off": {}, "on": {}}, []
    try:
        for arm, server in servers.items():
            ready.append(server.start())
            print(f"[{arm}] ready in {ready[-1]:.1f} s", flush=True)
        for arm, server in servers.items():
            closed_loop(server.url, 16, args.warmup if arm == "on" else 2, spec, deadline, "warm")
        for c, n in ((16, args.jobs_c16), (1, args.jobs_c1), (4, args.jobs_c4)):   # the headline first
            repeats = args.repeats_c16 if c == 16 else args.repeats
            runs = {"off": [], "on": []}
            for r in range(repeats):
                for arm in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    runs[arm].append(closed_loop(servers[arm].url, c, n, spec, deadline, f"c{c}r{r}-"))
            for arm in runs:
                arms[arm][f"c{c}"] = {**median_of(runs[arm]), "runs": runs[arm]}
                print(f"[{arm}] c{c}: {json.dumps(arms[arm][f'c{c}'], default=float)[:300]}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        for home in homes.values():
            home.cleanup()
    return arms, ready


def crash_test(args, spec: dict, deadline: float) -> dict:
    """200 jobs, the worker SIGKILLed twice and the server killed and restarted once: none lost, none twice."""
    with tempfile.TemporaryDirectory(prefix="conjure-serving-crash-") as home:
        server = Server(Path(home), args.max_batch)
        server.start()
        ids = []
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for i in range(args.crash_jobs):
                r = http.post("/v1/jobs", json={**spec, "prompt": f"{PROMPTS[i % len(PROMPTS)]} crash{i}", "seed": i})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
        db = Path(home) / "conjure.db"

        def succeeded() -> int:
            with sqlite3.connect(db, timeout=30) as c:
                return c.execute("select count(*) from jobs where status='succeeded'").fetchone()[0]

        def wait_until(n: int) -> None:
            while succeeded() < n and time.monotonic() < deadline:
                time.sleep(0.2)
        events, last = [], 0
        for at, what in ((args.crash_jobs // 6, "kill worker"), (args.crash_jobs // 3, "kill worker"),
                         (args.crash_jobs // 2, "restart server")):
            wait_until(max(at, last + args.max_batch + 1))   # each crash hits other jobs than the last one did
            last = succeeded()
            if what == "kill worker":
                pids = server.worker_pids()
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
            else:
                server.kill()
                server.start()
            events.append({"after_succeeded": succeeded(), "event": what})
            print(f"[crash] {events[-1]}", flush=True)
        t_end = time.monotonic()
        while time.monotonic() < deadline:
            with sqlite3.connect(db, timeout=30) as c:
                open_ = c.execute("select count(*) from jobs where status not in "
                                  "('succeeded','failed','cancelled','refused')").fetchone()[0]
            if open_ == 0:
                break
            time.sleep(0.5)
        with sqlite3.connect(db, timeout=30) as c:
            rows = {jid: (st, json.loads(out or "[]"), n) for jid, st, out, n in c.execute(
                "select id, status, outputs, json_extract(spec, '$.n') from jobs")}
            charges = dict(c.execute("select job_id, count(*) from job_charges group by job_id").fetchall())
            audits = dict(c.execute("select job_id, count(*) from audit_entries group by job_id").fetchall())
            states = dict(c.execute("select status, count(*) from jobs group by status").fetchall())
            errors = [e for (e,) in c.execute("select error from jobs where status != 'succeeded' limit 5")]
        server.stop()
        refused = [j for j in ids if rows.get(j, ("missing",))[0] == "refused"]   # by the prompt screen, at creation
        unfinished = [j for j in ids if rows.get(j, ("missing",))[0] in ("queued", "running")]   # time bound hit
        lost = [j for j in ids if rows.get(j, ("missing",))[0] not in ("succeeded", "refused", "queued", "running")]
        dup = [j for j in ids if charges.get(j, 0) > 1 or audits.get(j, 0) > (rows[j][2] or 1)
               or len(rows.get(j, (None, []))[1]) > (rows[j][2] or 1)]
        files = Path(home) / "files" / "jobs"
        stored = sum(1 for j in ids for p in (files / j).glob("*-out-*.png")) if files.exists() else 0
        return {"jobs": len(ids), "jobs_lost": len(lost), "jobs_duplicated": len(dup), "events": events,
                "states": states, "errors": errors, "refused_at_creation": len(refused),
                "unfinished_at_time_bound": len(unfinished),
                "charges": sum(charges.get(j, 0) for j in ids), "audit_entries": sum(audits.get(j, 0) for j in ids),
                "output_files_stored": stored, "drain_s_after_restart": time.monotonic() - t_end}


def pixel_check(steps: int, size: int, precision: str) -> dict:
    """Batched against unbatched images of the same requests (conjure-tiny, no guard: raw pixels): the largest
    difference in grey levels over every pixel and channel."""
    import numpy as np

    from conjure.pipelines import load_pipeline
    from conjure.pipelines.product import Job
    from conjure.pipelines.request import GenerationRequest
    pipe = load_pipeline("conjure-tiny", precision=precision, responsible=False)
    reqs = [GenerationRequest(PROMPTS[i], n=1 + i % 2, seed=10 * i, steps=steps, size=size, guidance=3.0 + i)
            for i in range(4)]
    alone = [pipe(r) for r in reqs]
    together = pipe.generate_batch(reqs, [Job() for _ in reqs])
    diffs = [int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())
             for x, y in zip(alone, together) for a, b in zip(x.images, y.images)]
    return {"images": len(diffs), "max_pixel_diff": max(diffs), "identical_images": diffs.count(0),
            "requests": len(reqs), "steps": steps, "size": size, "precision": precision}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--jobs-c1", type=int, default=3)
    p.add_argument("--jobs-c4", type=int, default=8)
    p.add_argument("--jobs-c16", type=int, default=32)
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--repeats-c16", type=int, default=1)
    p.add_argument("--crash-from", type=Path, help="with --recompute: a serving_crash.json from a --skip-load run")
    p.add_argument("--recompute", type=Path, help="recompute medians and ratios of a serving.json (no load)")
    p.add_argument("--crash-jobs", type=int, default=200)
    p.add_argument("--crash-steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=15.0)
    p.add_argument("--skip-crash", action="store_true")
    p.add_argument("--skip-load", action="store_true", help="run the crash test only")
    p.add_argument("--pixel-only", action="store_true", help="add the batched/unbatched pixel check to serving.json")
    p.add_argument("--crash-budget-s", type=float, default=300.0)
    p.add_argument("--skip-pixel", action="store_true")
    p.add_argument("--ready-only", type=int, default=0, metavar="N",
                   help="measure ready_s alone (N starts, each in a fresh home) into the existing serving.json")
    p.add_argument("--interleave", action="store_true", help="both servers up, rounds alternating between arms")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    if args.ready_only:
        path = args.out / "serving.json"
        result = json.loads(path.read_text())
        runs = []
        for _ in range(args.ready_only):
            with tempfile.TemporaryDirectory() as home:
                server = Server(Path(home), args.max_batch)
                runs.append(server.start())
                server.stop()
            print(f"ready in {runs[-1]:.1f} s", flush=True)
        result.update(ready_s=statistics.median(runs), ready_s_runs=runs,
                      ready_s_note=f"measured alone with --ready-only {args.ready_only} on "
                                   f"{time.strftime('%Y-%m-%d')} (load average {os.getloadavg()[0]:.1f}), "
                                   "separately from the load arms above (an earlier run)")
        derive(result)
        path.write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "serving.md").write_text(markdown(result))
        print(json.dumps({k: result[k] for k in ("ready_s", "ready_s_runs", "ready_s_note")}, indent=1))
        return
    if args.pixel_only or args.recompute:
        path = args.out / "serving.json"
        result = json.loads((args.recompute or path).read_text())
        if args.crash_from:
            result["crash_test"] = {**json.loads(args.crash_from.read_text()), "from_separate_run": True}
        derive(result)
        if args.pixel_only:
            result["batched_vs_unbatched"] = pixel_check(args.steps, args.size, args.precision)
        path.write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "serving.md").write_text(markdown(result))
        print(json.dumps({k: v for k, v in result.items() if k not in ("arms", "crash_test")}, indent=1))
        return
    t0 = time.monotonic()
    deadline = t0 + args.max_minutes * 60
    spec = {"steps": args.steps, "size": args.size, "model": "conjure-tiny", "precision": args.precision}
    arm_budget = (args.max_minutes * 60 - (0 if args.skip_crash else args.crash_budget_s)) / 2
    if args.skip_load:
        arms, ready = {"on": None, "off": None}, []
    elif args.interleave:
        arms, ready = load_interleaved(args, spec, 2 * arm_budget)
    else:
        arms, ready = load_arms(args, spec, arm_budget)
    crash = None if args.skip_crash else crash_test(args, {**spec, "steps": args.crash_steps},
                                                    time.monotonic() + args.crash_budget_s)
    if arms["on"] is None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serving_crash.json").write_text(json.dumps(crash, indent=1) + "\n")
        print(json.dumps(crash, indent=1))
        return
    result = {
        "machine": f"{os.cpu_count()} CPU cores, shared with other work (load average at start: "
                   f"{os.getloadavg()[0]:.1f})",
        "config": {**spec, "max_batch_on": args.max_batch, "interleaved": args.interleave, "repeats": args.repeats,
                   "repeats_c16": args.repeats_c16, "warmup_jobs": args.warmup,
                   "jobs": {"c1": args.jobs_c1, "c4": args.jobs_c4, "c16": args.jobs_c16}},
        "ready_s": statistics.median(ready),
        **fuzz_result(args.out),
        "batched_vs_unbatched": None if args.skip_pixel else pixel_check(args.steps, args.size, args.precision),
        "arms": arms, "crash_test": crash, "ready_s_runs": ready,
        "total_s": time.monotonic() - t0,
    }
    derive(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (args.out / "serving.md").write_text(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("arms", "crash_test")}, indent=1, default=float))


def fuzz_result(out: Path) -> dict:
    """fuzz_server_errors from benchmarks/fuzz.py's last run (a separate script: it starts its own server)."""
    path = out / "fuzz.json"
    if not path.exists():
        return {"fuzz_server_errors": None, "fuzz_note": "not run: python benchmarks/fuzz.py"}
    return {"fuzz_server_errors": json.loads(path.read_text())["fuzz_server_errors"],
            "fuzz_note": "benchmarks/fuzz.py (see fuzz.md)"}


def derive(r: dict) -> dict:
    """The headline ratios from the arms' medians, and the crash test's counts."""
    for arm in r["arms"].values():
        for c in arm.values():
            c.update(median_of(c["runs"]))
    on, off = r["arms"]["on"], r["arms"]["off"]
    r["batching_throughput_ratio"] = on["c16"]["sample_images_per_s"] / off["c16"]["sample_images_per_s"]
    r["batching_throughput_ratio_e2e"] = on["c16"]["throughput_jobs_per_s"] / off["c16"]["throughput_jobs_per_s"]
    r["batching_p95_ratio"] = on["c16"]["p95_s"] / off["c16"]["p95_s"]
    r["batching_p50_ratio_c1"] = on["c1"]["p50_s"] / off["c1"]["p50_s"]
    crash = r.get("crash_test")
    r["jobs_lost"] = crash["jobs_lost"] if crash else None
    r["jobs_duplicated"] = crash["jobs_duplicated"] if crash else None
    return r


def markdown(r: dict) -> str:
    lines = ["# Serving benchmark", "", f"Machine: {r['machine']}. Config: `{json.dumps(r['config'])}`.", "",
             "| arm | c | jobs/s (e2e) | sampled images/s | p50 s | p95 s | p99 s |", "|---|---|---|---|---|---|---|"]
    for arm in ("off", "on"):
        for c, m in r["arms"][arm].items():
            lines.append(f"| batching {arm} | {c[1:]} | {m['throughput_jobs_per_s']:.3f} | "
                         f"{m['sample_images_per_s']:.2f} | {m['p50_s']:.2f} | {m['p95_s']:.2f} | {m['p99_s']:.2f} |")
    lines += ["", "| measure | value | target |", "|---|---|---|"]
    targets = {"batching_throughput_ratio": ">= 2.0", "batching_throughput_ratio_e2e": "reported",
               "batching_p95_ratio": "<= 1.0", "batching_p50_ratio_c1": "<= 1.1", "ready_s": "<= 15",
               "jobs_lost": "0", "jobs_duplicated": "0", "fuzz_server_errors": "0"}
    for k, t in targets.items():
        v = r[k]
        lines.append(f"| {k} | {v:.3f} | {t} |" if isinstance(v, float) else f"| {k} | {v} | {t} |")
    if r.get("batched_vs_unbatched"):
        b = r["batched_vs_unbatched"]
        lines += ["", f"Batched against unbatched output of the same requests ({b['requests']} requests, {b['images']} "
                  f"images, {b['steps']} steps, {b['size']} px, {b['precision']}): largest pixel difference "
                  f"{b['max_pixel_diff']} grey levels; {b['identical_images']} of {b['images']} images bit-identical."]
    if r.get("crash_test"):
        c = r["crash_test"]
        lines += ["", f"Crash test: {c['jobs']} jobs, events {c['events']}; states {c['states']}; "
                  f"{c['charges']} charges, {c['audit_entries']} audit entries, {c['output_files_stored']} output files."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
