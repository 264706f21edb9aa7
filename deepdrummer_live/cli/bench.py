"""`deepdrummer-live bench --json`: throughput, latency and memory, measured in one run.

- candidates_per_s: render + MFCC + critic score, batched (the chains of one search step).
- baseline_candidates_per_s: the paper's path, one candidate at a time (4 bars at 44.1 kHz,
  its 291k-parameter critic), measured in the same process right after.
- rating_to_next_ms_*: a real daemon in this process (store, learner, session, OSC server on a
  free UDP port); a UDP client rates the current loop and waits for the next /dd/loop.
- train_step_ms: one optimizer step (batch 16) of the critic the daemon uses.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepdrummer_live.cli.flags import flag_errors
from deepdrummer_live.learn import checkpoint
from deepdrummer_live.learn.kinds import PAPER, CriticKind, kind_for
from deepdrummer_live.learn.learner import Learner
from deepdrummer_live.learn.search import resolve_device
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.kit import load_kit
from deepdrummer_live.sound.live import LiveAudio
from deepdrummer_live.sound.loudness import loop_lufs, peak_dbfs

SHAPES = ((8, 2), (8, 4))  # rows x bars measured besides the default 4 x 1


def _throughput(score, make_batch, seconds: float) -> float:
    score(make_batch())  # warm-up: allocations, kernels
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch = make_batch()
        score(batch)
        n += len(batch)
    if n and str(getattr(batch.grid, "device", "cpu")).startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def measure_candidates(learner: Learner, seconds: float, prior: pattern.Prior | None = None) -> float:
    g = torch.Generator(device=learner.device).manual_seed(0)
    n = learner.chains

    def make():
        return pattern.random_loops(n, len(learner.kit), g, learner.device, prior=prior or learner.prior)

    def score(loops):
        p = learner.scorer.score(learner.model, loops)
        return float(p[-1])  # forces the device to finish

    return _throughput(score, make, seconds)


def measure_baseline(kit, device, seconds: float) -> float:
    scorer = PAPER.make_scorer(kit, PAPER.config, device)
    model = PAPER.build().to(device).eval()
    g = torch.Generator(device=device).manual_seed(0)
    return _throughput(lambda loops: scorer.score(model, loops),
                       lambda: pattern.random_loops(1, len(kit), g, device), seconds)


def measure_train_step(learner: Learner, steps: int = 40) -> float:
    """ms of one training step (a mini-batch, or a whole fit of the like head: whatever one
    `train(1)` is for this critic) with 24 ratings, a new rating before each step."""
    g = torch.Generator(device=learner.device).manual_seed(1)
    loops = pattern.random_loops(24 + steps, len(learner.kit), g, learner.device)
    for i in range(24):
        learner.set_rating(10_000_000 + i, loops.take(i), i % 2)
    learner.train(2)  # warm-up
    t0 = time.perf_counter()
    for i in range(24, 24 + steps):
        learner.set_rating(10_000_000 + i, loops.take(i), i % 2)
        learner.train(1)
    ms = (time.perf_counter() - t0) * 1000 / steps
    for i in range(24 + steps):
        learner.set_rating(10_000_000 + i, None, None)
    return ms


def measure_loudness(learner: Learner, n: int = 48, sr: int = 44100) -> dict:
    """LUFS and peak of `n` loops from the learner's prior, rendered as the library's .wav is."""
    g = torch.Generator(device=learner.device).manual_seed(2)
    loops = pattern.random_loops(n, len(learner.kit), g, learner.device, prior=learner.prior)
    bars = [LiveAudio(learner.kit).render(loops.take(i), 120.0, sr) for i in range(n)]
    lufs = np.array([loop_lufs(b, sr) for b in bars])
    return {"loop_lufs_p50": round(float(np.median(lufs)), 2),
            "loop_lufs_p5": round(float(np.percentile(lufs, 5)), 2),
            "loop_lufs_p95": round(float(np.percentile(lufs, 95)), 2),
            "loop_peak_dbfs_max": round(max(peak_dbfs(b) for b in bars), 2)}


def measure_rating_latency(kit, device, seed: int, kind: CriticKind, ratings: int, interval: float,
                           shape: tuple[int, int] | None = None) -> list[float]:
    """Rate over real UDP against an in-process daemon; ms from sending /dd/like to the next /dd/loop."""
    from deepdrummer_live.client import OscClient
    from deepdrummer_live.playback import VirtualPlayback
    from deepdrummer_live.session import Session
    from deepdrummer_live.storage.store import Store
    from deepdrummer_live.surfaces.osc import OscServer

    with tempfile.TemporaryDirectory(prefix="dd-bench-") as tmp:
        store = Store(Path(tmp))
        osc = OscServer("127.0.0.1", 0)
        learner = Learner(kit, device, seed, kind=kind)
        checkpoint.choose_start(learner)  # as `run` does: a built-in kit's shipped hearing critic
        rows, bars = shape or (None, None)
        session = Session(learner, store, rows=rows, bars=bars)
        playback = VirtualPlayback(session.tempo, session.on_player_event)
        session.attach_playback(playback)
        client = OscClient(osc.address[1])
        osc.subscribers.add(("127.0.0.1", client.local_port))
        osc.start(session)
        session.start()
        latencies: list[float] = []
        try:
            current = client.expect("/dd/loop", 30)[0]
            for i in range(ratings):
                time.sleep(interval)  # the performer listens to the loop
                t0 = time.perf_counter()
                client.send("/dd/like" if i % 3 == 0 else "/dd/dislike", current)
                params = client.expect("/dd/loop", 30)
                latencies.append((time.perf_counter() - t0) * 1000)
                current = params[0]
        finally:
            osc.stop()
            session.shutdown()
            playback.close()
            store.close()
            client.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def cmd_bench(args) -> int:
    with flag_errors("--device"):
        device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    with flag_errors("--kit"):
        kit = load_kit(args.kit)
    seed = 0 if args.seed is None else args.seed
    with flag_errors("--paper/--critic-kind"):
        kind = kind_for(args.paper, args.critic_kind)
    learner = Learner(kit, device, seed, kind=kind)
    checkpoint.choose_start(learner)  # the critic `run` starts with (a built-in kit's shipped hearing critic)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    say(f"kit {kit.name} ({len(kit)} samples), critic {kind.describe(learner.model)}, "
        f"device {device}, {learner.chains} chains x {learner.iters} iterations")
    batched = measure_candidates(learner, args.seconds)
    say(f"batched: {batched:,.0f} candidates/s")
    baseline = measure_baseline(kit, device, args.seconds)
    say(f"paper path, one at a time: {baseline:,.0f} candidates/s ({batched / baseline:.1f}x)")
    train_ms = measure_train_step(learner)
    say(f"train step: {train_ms:.2f} ms")
    loudness = measure_loudness(learner)
    say(f"loudness of 48 loops: median {loudness['loop_lufs_p50']} LUFS, "
        f"peak <= {loudness['loop_peak_dbfs_max']} dBFS")
    latencies = measure_rating_latency(kit, device, seed, kind, args.ratings, interval=1.0)
    result = {
        "candidates_per_s": round(batched, 1),
        "baseline_candidates_per_s": round(baseline, 1),
        "speedup": round(batched / baseline, 2),
        "rating_to_next_ms_p50": round(statistics.median(latencies), 2),
        "rating_to_next_ms_p95": round(percentile(latencies, 95), 2),
        "train_step_ms": round(train_ms, 3),
        "train_per_rating_ms": round(train_ms * learner.config.batches_per_rating, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(device),
        "kit": kit.name,
        "critic": kind.name,
        "critic_parameters": learner.n_parameters,
        "chains": learner.chains,
        "iters": learner.iters,
        "ratings": len(latencies),
        "dynamics": learner.prior.dynamics,
        **loudness,
    }
    # Bigger loops (contract v1.2): 8 rows over 2 and 4 bars, with the critic that reads any shape
    if kind.any_shape:
        for rows, bars in SHAPES:
            key = f"{rows}x{bars}"
            prior = learner.make_prior(rows=rows, bars=bars)
            result[f"candidates_per_s_{key}"] = round(measure_candidates(learner, args.seconds, prior), 1)
            shaped = measure_rating_latency(kit, device, seed, kind, max(args.ratings // 2, 1), 0.5, (rows, bars))
            result[f"rating_to_next_ms_p95_{key}"] = round(percentile(shaped, 95), 2)
            say(f"{key}: {result[f'candidates_per_s_{key}']:,.0f} candidates/s, rating -> next p95 "
                f"{result[f'rating_to_next_ms_p95_{key}']} ms")
    if not args.json:
        for k, v in result.items():
            print(f"{k:28s} {v}")
    print(json.dumps(result))
    return 0
