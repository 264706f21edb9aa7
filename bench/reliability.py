"""Reliability measurements against the real daemon (figures in docs/reliability.md).

    .venv/bin/python bench/reliability.py [--flood-rate 10000] [--flood-seconds 10] [--ratings 1000]

1. Flood: `--flood-rate` OSC datagrams per second for `--flood-seconds` (valid and invalid mixed):
   the daemon stays up, RSS before/after, totals == distinct rated loops, ping latency after.
2. Long session: `--ratings` ratings at full speed (rate, wait for the next /dd/loop, rate it...):
   RSS growth and rating -> next loop latency, first vs last 100.
Prints one JSON object (last line). tests/test_reliability.py runs short versions of both.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon import Daemon, OscClient, build  # noqa: E402


def _flood_messages(rng: random.Random, loop_ids: list[int]) -> list[bytes]:
    """A mix of valid and invalid datagrams, pre-built (building them is slower than sending)."""
    out = []
    for _ in range(2000):
        k = rng.random()
        if k < 0.25:
            out.append(build(rng.choice(("/dd/like", "/dd/dislike")), rng.choice(loop_ids)))
        elif k < 0.30:
            out.append(build(rng.choice(("/dd/like", "/dd/dislike"))))
        elif k < 0.40:
            out.append(build("/dd/status"))
        elif k < 0.45:
            out.append(build("/dd/ping"))
        elif k < 0.47:
            out.append(build("/dd/next"))
        elif k < 0.50:
            out.append(build("/dd/tempo", rng.uniform(60, 180)))
        elif k < 0.60:
            out.append(build("/dd/like", rng.randrange(10**6, 2**31 - 1)))  # never proposed
        elif k < 0.70:
            out.append(build("/dd/tempo", rng.choice((0.0, 1000.0, -5.0)), types="f"))
        elif k < 0.75:
            out.append(build("/dd/save", "../" * rng.randint(1, 5) + "x"))
        elif k < 0.80:
            out.append(build("/dd/" + "".join(rng.choice("abcxyz") for _ in range(6))))
        elif k < 0.90:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))))
        else:
            out.append(b"#bundle\x00" + bytes(8) + (-4).to_bytes(4, "big", signed=True))  # bad size
    return out


def flood(port: int, rate: float, seconds: float, seed: int = 0) -> int:
    """Send `rate` datagrams/s for `seconds` to 127.0.0.1:port from a fresh socket; returns how many.

    Loop ids for valid ratings come from /dd/status (the current loop and ones just below it)."""
    c = OscClient(port)
    try:
        c.send("/dd/status")
        current = c.expect("/dd/status")[2]
        ids = list(range(max(1, current - 20), current + 1))
        msgs = _flood_messages(random.Random(seed), ids)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # replies to it are never read
        sock.bind(("127.0.0.1", 0))
        target = ("127.0.0.1", port)
        sent, t0 = 0, time.perf_counter()
        end = t0 + seconds
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            due = int((now - t0) * rate)
            while sent < due:
                try:
                    sock.sendto(msgs[sent % len(msgs)], target)
                except OSError:  # ENOBUFS and the like: the kernel drops, as a network would
                    pass
                sent += 1
            time.sleep(0.0005)
        sock.close()
        return sent
    finally:
        c.close()


def ping_ms(c: OscClient, timeout: float = 10.0) -> float:
    c.drain(0.001)
    t0 = time.perf_counter()
    c.send("/dd/ping")
    c.expect("/dd/pong", timeout=timeout)
    return (time.perf_counter() - t0) * 1000


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def long_session(c: OscClient, ratings: int, seed: int = 1) -> dict:
    """Rate the current loop, wait for the next /dd/loop, repeat; c must be a subscriber."""
    rng = random.Random(seed)
    lat = []
    for _ in range(ratings):
        c.backlog.clear()
        t0 = time.perf_counter()
        c.send("/dd/like" if rng.random() < 0.4 else "/dd/dislike")
        c.expect("/dd/rated", timeout=30)
        c.expect("/dd/loop", timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
    n = min(100, len(lat) // 3)
    return {"ratings": ratings, "p50_ms": statistics.median(lat), "p95_ms": p95(lat),
            "first_p95_ms": p95(lat[:n]), "last_p95_ms": p95(lat[-n:]), "window": n}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood-rate", type=float, default=10000)
    ap.add_argument("--flood-seconds", type=float, default=10)
    ap.add_argument("--ratings", type=int, default=1000)
    args = ap.parse_args()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        c = OscClient(0)
        d = Daemon(state, "--notify", f"127.0.0.1:{c.port}")
        c.target = ("127.0.0.1", d.port)
        d.start()
        try:
            c.drain(0.2)
            base = [ping_ms(c) for _ in range(50)]
            out["ping_ms_before"] = statistics.median(base)
            out["rss_mb_start"] = rss_mb(d.proc.pid)
            t0 = time.perf_counter()
            sent = flood(d.port, args.flood_rate, args.flood_seconds)
            out["flood_sent"] = sent
            out["flood_rate_achieved"] = sent / (time.perf_counter() - t0)
            t1 = time.perf_counter()
            first = ping_ms(c, timeout=120)
            out["first_ping_after_flood_ms"] = first
            after = [ping_ms(c) for _ in range(50)]
            out["ping_ms_after"] = statistics.median(after)
            out["recovered_s"] = time.perf_counter() - t1
            out["alive_after_flood"] = d.proc.poll() is None
            out["rss_mb_after_flood"] = rss_mb(d.proc.pid)
            c.send("/dd/status")
            likes, dislikes, *_ = c.expect("/dd/status")
            db = sqlite3.connect(f"file:{state / 'state.sqlite'}?mode=ro", uri=True)
            rows = db.execute("SELECT loop_id, rating FROM ratings WHERE undone = 0 ORDER BY seq").fetchall()
            db.close()
            last = dict(rows)
            out["flood_ratings_stored"] = len(rows)
            out["flood_distinct_loops_rated"] = len(last)
            out["totals_match_distinct"] = (likes, dislikes) == (sum(last.values()), len(last) - sum(last.values()))
            time.sleep(2)  # let the library/training backlog of the flood drain before the session
            c.drain(0.5)
            rss_before_session = rss_mb(d.proc.pid)
            session = long_session(c, args.ratings)
            out.update({f"session_{k}": v for k, v in session.items()})
            out["rss_mb_before_session"] = rss_before_session
            out["rss_mb_after_session"] = rss_mb(d.proc.pid)
        finally:
            c.close()
            out["exit_status"] = d.stop()
    print(json.dumps(out))
    return 0 if out.get("alive_after_flood") and out.get("totals_match_distinct") else 1


if __name__ == "__main__":
    sys.exit(main())
