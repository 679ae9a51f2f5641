"""Authorize throughput and latency vs. a constant endpoint (/health) on the same server.

    python -m bench.bench_authorize [--seconds 2] [--rounds 3] [--redis redis://127.0.0.1:6379/14]
                                    [--lifecycle] [--only memory|redis] [--conns 4]

Starts `tollguard serve` (in-process state, then Redis when reachable) on loopback and
measures, on the same server: closed-loop throughput with 4 (``--conns``) keep-alive connections in
alternating /health and authorize rounds, and latency at a fixed 1,000 requests/s.
``--lifecycle`` adds the same for whole calls: authorize, answer, end on one connection
(three requests per call; throughput is in requests/s, so it compares with /health).
Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
RATES = ROOT / "tests" / "limits" / "data" / "rates.csv"
KEY = "bench-key"
LIFECYCLE = "lifecycle"  # authorize + answer + end of one call
CALLEES = ["0201234567", "0612345678", "0049301234567", "00441234567890", "0013105550100"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(state: str, tmp: Path, lease_calls: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    from tollguard.api.auth import hash_key

    (tmp / "policy.toml").write_text(
        f'[defaults]\ncountry = "NL"\ntimezone = "Europe/Amsterdam"\nrates = "{RATES}"\n\n'
        "[accounts.bench.limits]\nmax_spend_per_day = 1000000\nmax_spend_per_hour = 1000000\n"
        "max_calls_per_day = 100000000\nmax_calls_per_minute = 100000000\n"
        'blocked_countries = ["TL"]\n'
    )
    (tmp / "keys.toml").write_text(
        f'[[keys]]\nname = "bench"\nrole = "switch"\ntenant = "*"\nsha256 = "{hash_key(KEY)}"\n'
    )
    port = _free_port()
    cmd = [
        sys.executable, "-m", "tollguard.commands.serve", "serve",
        "--policy", str(tmp / "policy.toml"), "--keys", str(tmp / "keys.toml"),
        "--state", state, "--port", str(port), "--sweep-interval", "0",
        "--lease-calls", str(lease_calls),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server with state {state} did not start")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_cpu_s(url: str | None) -> float:
    if url is None:
        return 0.0
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Load:
    def __init__(
        self, port: int, path: str, server_pid: int = 0, redis_url: str | None = None
    ) -> None:
        self.port = port
        self.path = path
        self.server_pid = server_pid
        self.redis_url = redis_url
        self.seq = 0
        self.lock = threading.Lock()

    def requests(self) -> list[tuple[str, str, bytes, dict[str, str]]]:
        """What one step sends: one request, or a whole call (authorize, answer, end)."""
        if self.path == "/health":
            return [("GET", "/health", b"", {})]
        with self.lock:
            self.seq += 1
            n = self.seq
        call_id = f"bench-{time.monotonic_ns()}-{n}"
        body = json.dumps(
            {"account": "bench", "caller": "100", "callee": CALLEES[n % len(CALLEES)],
             "call_id": call_id}
        ).encode()  # fmt: skip
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        out = [("POST", "/v1/authorize", body, headers)]
        if self.path == LIFECYCLE:
            out.append(("POST", f"/v1/calls/{call_id}/answer", b"{}", headers))
            out.append(("POST", f"/v1/calls/{call_id}/end", b'{"billsec": 42}', headers))
        return out

    def worker(self, until: float, rate: float | None, out: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        next_at = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now >= until:
                break
            if rate is not None:
                if now < next_at:
                    time.sleep(next_at - now)
                next_at += 1.0 / rate
            for method, path, body, headers in self.requests():
                t0 = time.perf_counter()
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                resp.read()
                out.append(time.perf_counter() - t0)
                if resp.status != 200:
                    raise SystemExit(f"{method} {path} answered {resp.status}")
        conn.close()

    def run(self, seconds: float, conns: int, total_rate: float | None) -> dict[str, float]:
        lats: list[list[float]] = [[] for _ in range(conns)]
        until = time.perf_counter() + seconds
        per = None if total_rate is None else total_rate / conns
        if per is not None and self.path == LIFECYCLE:
            per /= 3  # the rate is of requests; a step is three of them
        threads = [
            threading.Thread(target=self.worker, args=(until, per, lats[i])) for i in range(conns)
        ]
        cpu0 = _cpu_s(self.server_pid) if self.server_pid else 0.0
        rcpu0 = _redis_cpu_s(self.redis_url)
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        cpu = (_cpu_s(self.server_pid) if self.server_pid else 0.0) - cpu0
        rcpu = _redis_cpu_s(self.redis_url) - rcpu0
        flat = sorted(x for part in lats for x in part)
        q = statistics.quantiles(flat, n=100)
        rps = len(flat) / elapsed
        return {
            "rps": rps,
            "p50_ms": q[49] * 1e3,
            "p99_ms": q[98] * 1e3,
            "n": len(flat),
            "server_us": cpu / len(flat) * 1e6,  # server CPU per request
            "redis_us": rcpu / len(flat) * 1e6,
        }


def bench(
    state: str,
    seconds: float,
    rounds: int,
    lifecycle: bool = False,
    conns: int = 4,
    lease_calls: int = 0,
) -> None:
    """Closed-loop throughput of /health and authorize in alternating rounds on the same
    server, then latency of each at 1,000 req/s offered. This VM's loopback throughput
    shifts between runs (a /health round gives 7k or 14k req/s on a quiet machine), so
    each authorize round is compared with the /health round next to it and the median of
    those ratios is the figure; every round is printed. ``lifecycle``: whole calls too."""
    paths = ["/v1/authorize", *([LIFECYCLE] if lifecycle else [])]
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = _start(state, Path(tmp), lease_calls)
        try:
            for path in paths:
                Load(port, path).run(0.5, 2, None)  # warm caches
            rounds_of: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {
                p: [] for p in paths
            }
            rurl = state if state.startswith("redis") else None
            for _ in range(rounds):
                for path in paths:
                    h = Load(port, "/health", proc.pid, rurl).run(seconds, conns, None)
                    a = Load(port, path, proc.pid, rurl).run(seconds, conns, None)
                    rounds_of[path].append((h, a))
            at_1k = {path: Load(port, path).run(seconds, 4, 1000.0) for path in ("/health", *paths)}
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    leases = f", quota leases of {lease_calls} calls" if lease_calls else ""
    print(
        f"\nstate={state.split('://')[0]}{leases} ({conns} connections in the closed-loop rounds)"
    )
    for path, pairs in rounds_of.items():
        _report(path, pairs, at_1k)
    for path, k in at_1k.items():
        print(
            f"  {path:15s} at 1000 req/s offered: {k['rps']:6.0f} req/s, p50 {k['p50_ms']:.2f} ms,"
            f" p99 {k['p99_ms']:.2f} ms"
        )


def _report(
    path: str, pairs: list[tuple[dict[str, float], dict[str, float]]], at_1k: dict[str, Any]
) -> None:
    name = "authorize" if path != LIFECYCLE else "lifecycle"
    ratios = []
    for n, (h, a) in enumerate(pairs, 1):
        ratios.append(a["rps"] / h["rps"])
        print(
            f"  round {n}: /health {h['rps']:6.0f} req/s (p50 {h['p50_ms']:.2f} ms),"
            f" {name} {a['rps']:6.0f} req/s (p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms)"
            f" -> {ratios[-1]:.2f}; CPU per request: server {h['server_us']:.0f} vs"
            f" {a['server_us']:.0f} us, Redis {a['redis_us']:.0f} us"
        )
    ratio = statistics.median(ratios)
    rps = statistics.median(a["rps"] for _, a in pairs)
    calls = f" = {rps / 3:.0f} calls/s" if path == LIFECYCLE else ""
    print(
        f"  {name}/health throughput ratio {ratio:.2f} (median of {len(ratios)};"
        f" range {min(ratios):.2f}-{max(ratios):.2f}; target >= 0.50);"
        f" {name} {rps:.0f} req/s (median){calls};"
        f" p99 at 1k req/s {at_1k[path]['p99_ms']:.2f} ms (target <= 5)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating /health-authorize rounds")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--lifecycle", action="store_true", help="also authorize+answer+end")
    ap.add_argument("--only", choices=["memory", "redis", "redis-leases"], help="one backend only")
    ap.add_argument("--lease-calls", type=int, default=100, help="calls per quota lease")
    ap.add_argument("--conns", type=int, default=4, help="connections in the closed-loop rounds")
    args = ap.parse_args()
    if args.only is None or args.only == "memory":
        bench("memory://", args.seconds, args.rounds, args.lifecycle, args.conns)
    if args.only == "memory":
        return
    try:
        import redis

        redis.Redis.from_url(args.redis, socket_connect_timeout=1).flushdb()
    except Exception as exc:
        print(f"\nRedis at {args.redis} not reachable ({exc}); skipped the Redis run")
        return
    if args.only != "redis-leases":
        bench(args.redis, args.seconds, args.rounds, args.lifecycle, args.conns)
    if args.only != "redis":
        bench(args.redis, args.seconds, args.rounds, args.lifecycle, args.conns, args.lease_calls)


if __name__ == "__main__":
    main()
