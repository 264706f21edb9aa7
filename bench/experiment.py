"""Reproduce the paper's experiment with simulated participants, over OSC, then draw the report.

Each participant is a simulated user (deepdrummer_live/learn/simuser.py) driving its own
`deepdrummer-live experiment` daemon over real UDP: it rates every loop it is given (phase I while
the critic learns, then the blind, shuffled phase II) until `/dd/experiment` says `done`. Then
`deepdrummer-live report --state-dir STUDY` draws the figures across participants.

    .venv/bin/python bench/experiment.py --users backbeat,sparse,fotf,offbeat_hats --phase1 40 --phase2 20 \
        --study /tmp/study --report docs/images
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import ROOT  # noqa: E402

from deepdrummer_live.client import OscClient  # noqa: E402
from deepdrummer_live.learn.simuser import make_user, parse_loop  # noqa: E402
from deepdrummer_live.testing import daemon_command, free_udp_port  # noqa: E402


def run_participant(study: Path, code: str, taste: str, seed: int, args) -> dict:
    port = free_udp_port()
    study.mkdir(parents=True, exist_ok=True)
    cmd = daemon_command() + ["experiment", "--participant", code, "--state-dir", str(study), "--phase1",
                              str(args.phase1), "--phase2", str(args.phase2), "--headless", "--osc-port", str(port),
                              "--midi-backend", "none", "--audio", "none", "--seed", str(seed),
                              "--log-level", "WARNING"]
    if args.kit:
        cmd += ["--kit", args.kit]
    log = open(study / f"{code}.stderr", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, cwd=str(ROOT))
    client = OscClient(port)
    user = make_user(taste, args.user_seed)
    t0 = time.monotonic()
    try:
        deadline = time.monotonic() + args.startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"experiment daemon exited with {proc.returncode}; see {study}/{code}.stderr")
            client.send("/dd/status")
            status = client.wait("/dd/status", 0.5)
            if status is not None and status[2] >= 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"experiment daemon not ready in {args.startup_timeout} s; see "
                                   f"{study}/{code}.stderr")
            time.sleep(0.1)  # poll interval
        time.sleep(0.5)  # late answers to the readiness probes, dropped below
        client.drain()
        client.send("/dd/subscribe")
        client.send("/dd/experiment")
        progress = client.expect("/dd/experiment", args.timeout)
        client.send("/dd/next")
        loop = client.expect("/dd/loop", args.timeout)
        while progress[1] != "done":
            time.sleep(args.seconds_per_loop)  # listening while the critic trains
            liked = user.judge(parse_loop(loop))
            client.send("/dd/like" if liked else "/dd/dislike", int(loop[0]))
            client.expect("/dd/rated", args.timeout, lambda a, i=loop[0]: a[0] == i)
            progress = client.expect("/dd/experiment", args.timeout)
            loop = client.expect("/dd/loop", args.timeout, lambda a, i=loop[0]: a[0] > i)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return {"participant": code, "taste": taste, "seconds": round(time.monotonic() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", default="backbeat,sparse,fotf", help="simulated users, one participant each")
    ap.add_argument("--phase1", type=int, default=40)
    ap.add_argument("--phase2", type=int, default=20)
    ap.add_argument("--study", type=Path, required=True, help="the experiment's state dir (participants/ in it)")
    ap.add_argument("--report", type=Path, default=None, help="report folder [STUDY/report]")
    ap.add_argument("--kit", default=None)
    ap.add_argument("--seed", type=int, default=1, help="participant k's daemon runs with --seed SEED+k")
    ap.add_argument("--user-seed", type=int, default=0)
    ap.add_argument("--seconds-per-loop", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    runs = []
    for k, taste in enumerate(t.strip() for t in args.users.split(",") if t.strip()):
        # Each participant its own seed: its own loops and its own phase II order.
        runs.append(run_participant(args.study, f"sim{k + 1:02d}-{taste}", taste, args.seed + k, args))
        print(json.dumps(runs[-1]), flush=True)
    report = subprocess.run(daemon_command() + ["report", "--state-dir", str(args.study), "--out",
                                                str(args.report or args.study / "report")],
                            capture_output=True, text=True, cwd=str(ROOT))
    print(report.stdout, end="")
    print(report.stderr, end="", file=sys.stderr)
    return report.returncode


if __name__ == "__main__":
    sys.exit(main())
