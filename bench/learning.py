"""Learning benchmark: does the daemon learn a (simulated) performer's taste fast?

The paper's protocol, played over OSC against the real daemon, once per simulated user:

1. start `deepdrummer-live run --headless --midi-backend none --audio none` on a free port with a
   fresh state dir (deepdrummer_live.testing.Daemon), subscribed from its start (--notify); wait for
   its first /dd/loop;
2. *before*: `/dd/mode good` and `--eval-loops` loops from the untrained critic (each listened
   to for `--eval-listen` seconds, default `--seconds-per-loop`, and judged by the user without
   rating it; `/dd/next` moves on);
3. *training*: `/dd/mode explore` and `--ratings` ratings, one per `--seconds-per-loop` (one bar
   at 120 BPM = 2 s): the user listens, then sends `/dd/like` or `/dd/dislike` with the loop id,
   and the daemon trains in the background while the next loop plays;
4. *after*: `/dd/mode good` again and `--eval-loops` loops from the trained critic, judged
   without rating;
5. SIGINT the daemon (clean shutdown).

The like-rate before and after, per user, is printed as a table; with `--json` the last stdout
line is one JSON object. `--inproc` runs the same protocol in this process against
`deepdrummer_live.learn.learner.Learner` directly (propose, set_rating, train): faster and deterministic,
for tuning; the figures to report come from the OSC run.

    .venv/bin/python bench/learning.py --users all --ratings 50 --eval-loops 25 --json
    .venv/bin/python bench/learning.py --kit ../shared/external-kits/deepdrummer-paper --users backbeat,sparse
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepdrummer_live.client import OscClient  # noqa: E402
from deepdrummer_live.learn.simuser import SOUND_USERS, USERS, SimUser, hear, make_user, parse_loop  # noqa: E402
from deepdrummer_live.testing import Daemon  # noqa: E402


@dataclass
class UserResult:
    user: str
    kit: str
    before: float
    after: float
    gain: float
    liked_in_training: float  # like-rate over the rated (explore) loops
    liked_last_half: float  # like-rate over the second half of the rated loops
    before_p_like: float  # mean critic P(like) the daemon reported for the eval loops
    after_p_like: float
    rating_to_next_ms_p95: float | None = None  # client side: rating sent -> next /dd/loop received
    train_steps: int | None = None
    seconds: float = 0.0
    errors: list = field(default_factory=list)
    seed: int = 0
    # The same like-rates as the user's like probability averaged over the judged loops: the
    # expectation of the judged rate, without the noise of its coin flips (a steadier figure for tuning).
    before_expected: float | None = None
    after_expected: float | None = None
    gain_expected: float | None = None
    # The user's like-rate on the kit's random loops (2,000 of them, expected): what `before` measures
    # with 12-40 loops. A seed's before loops are the same for every user (an untrained critic
    # proposes the same loops), so a lucky or unlucky seed moves every user's gain; after - base does not.
    base: float | None = None
    gain_vs_base: float | None = None


def _rate(judgements: list[bool]) -> float:
    return sum(judgements) / len(judgements) if judgements else float("nan")


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


def run_osc_user(user: SimUser, args) -> UserResult:
    t_start = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix=f"ddlearn-{user.name}-"))
    extra = ["--log-level", "WARNING"]
    for flag in ("rows", "bars", "meter", "critic_kind"):
        if getattr(args, flag, None) is not None:
            extra += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if args.critic:
        extra += ["--critic", str(args.critic.expanduser().resolve())]
    if args.device:
        extra += ["--device", args.device]
    # cwd=ROOT: `python -m` imports this checkout's package (see deepdrummer_live.testing.source_root)
    client = OscClient(0)
    daemon = Daemon(state / "state", *extra, seed=args.seed, kit=args.kit, cwd=ROOT, client=client,
                    log_path=state / "bench-daemon.stderr")
    timeout = args.timeout
    try:
        # Ready once its first /dd/loop reached us (subscribed with --notify from its start): it loads
        # the kit and calibrates the critic first.
        daemon.start(timeout=args.startup_timeout)
        first = client.wait("/dd/loop", 0)
        client.drain()  # the first loop's /dd/levels: the protocol starts from the next loop
        last_id = [first[0]]

        def next_loop(send: tuple | None) -> tuple[list, float]:
            t0 = time.perf_counter()
            if send:
                client.send(*send)
            msg = client.expect("/dd/loop", timeout, lambda a: a[0] > last_id[0])
            ms = (time.perf_counter() - t0) * 1000
            last_id[0] = msg[0]
            levels = client.expect("/dd/levels", timeout, lambda a: a[0] == msg[0])
            shape = client.expect("/dd/shape", timeout, lambda a: a[0] == msg[0])
            return parse_loop(msg, levels, shape), ms

        def evaluate() -> tuple[list[bool], list[float], float]:
            client.send("/dd/mode", args.eval_mode)
            judged, ps, expected = [], [], []
            for _ in range(args.eval_loops):
                msg, _ = next_loop(("/dd/next",))
                time.sleep(args.eval_listen)  # listening before judging: the daemon searches meanwhile
                judged.append(user.judge(msg))
                expected.append(user.like_probability(msg))
                ps.append(msg.p_like)
            return judged, ps, sum(expected) / len(expected)

        before, before_p, before_x = evaluate()
        client.send("/dd/mode", "explore")
        msg, _ = next_loop(("/dd/next",))
        rated, latencies = [], []
        for _ in range(args.ratings):
            time.sleep(args.seconds_per_loop)  # listening to one bar while the critic trains
            liked = user.judge(msg)
            rated.append(liked)
            loop_id = msg.id
            msg, ms = next_loop(("/dd/like" if liked else "/dd/dislike", int(loop_id)))
            client.expect("/dd/rated", timeout, lambda a, i=loop_id: a[0] == i)
            latencies.append(ms)
        after, after_p, after_x = evaluate()
        client.send("/dd/status")
        status = client.expect("/dd/status", timeout)
        deadline = time.monotonic() + timeout
        while int(status[5]) == 0 and len(set(rated)) == 2 and time.monotonic() < deadline:
            # Only in very short runs: the critic is still learning to hear the kit, and the
            # ratings' training waits behind it. Wait for it, so train_steps says what was learnt.
            time.sleep(0.5)
            client.send("/dd/status")
            status = client.expect("/dd/status", timeout)
        half = rated[len(rated) // 2:]
        return UserResult(user.name, args.kit or "default", _rate(before), _rate(after),
                          _rate(after) - _rate(before), _rate(rated), _rate(half),
                          sum(before_p) / len(before_p), sum(after_p) / len(after_p), _p95(latencies),
                          int(status[5]), time.monotonic() - t_start,
                          [f"{e.address}: {e.message}" for e in client.errors][:5],
                          before_expected=before_x, after_expected=after_x, gain_expected=after_x - before_x)
    finally:
        client.close()
        daemon.shutdown(signal.SIGINT, 30)  # killed if it hangs
        if not args.keep_state:
            shutil.rmtree(state, ignore_errors=True)


def idle_hearing(learner, steps: int) -> int:
    """`steps` steps of the long hearing pass in the worker's own slices (some slices only fetch fresh
    loops), as the daemon's worker runs them while a loop plays; the steps actually learnt."""
    from deepdrummer_live.worker import IDLE_HEARING_SLICE

    done = 0
    while done < steps and learner.long_hearing_left():
        before = learner.hearing_steps
        learner.keep_hearing(min(IDLE_HEARING_SLICE, steps - done))
        done += learner.hearing_steps - before
    return done


def run_inproc_user(user: SimUser, args) -> UserResult:
    """The same protocol against an Engine in this process: no buffer, no worker, no OSC."""
    import torch

    from deepdrummer_live.learn import checkpoint
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.learn.search import resolve_device
    from deepdrummer_live.sound.kit import load_kit

    torch.set_num_threads(args.threads)
    t_start = time.monotonic()
    kit = load_kit(args.kit)
    from deepdrummer_live.learn.critic import LEAN_CONFIG, with_overrides
    from deepdrummer_live.learn.kinds import kind_for

    kind = kind_for(False, args.critic_kind)
    overrides = {k: type(getattr(LEAN_CONFIG, k))(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    learner = Learner(kit, resolve_device(args.device or "cpu"), args.seed, kind=kind,
                     config=with_overrides(kind.config, **overrides) if overrides else None)
    prior = learner.make_prior(rows=args.rows, bars=args.bars, meter=args.meter)
    checkpoint.choose_start(learner, critic=args.critic)  # as the daemon: --critic, else the shipped hearing critic
    ids = iter(range(1, 10**9))

    def propose(mode: str):
        p = learner.propose(mode, False, prior=prior)
        return p, hear(learner.record(p.loops, id=next(ids), p_like=p.p_like))

    def evaluate():
        out = [propose(args.eval_mode) for _ in range(args.eval_loops)]
        return ([user.judge(m) for _, m in out], [p.p_like for p, _ in out],
                sum(user.like_probability(m) for _, m in out) / len(out))

    before, before_p, before_x = evaluate()
    if learner.needs_hearing():  # the daemon does this in the background right after start
        learner.learn_to_hear()
    rated = []
    for _ in range(args.ratings):
        p, m = propose("explore")
        liked = user.judge(m)
        rated.append(liked)
        learner.set_rating(m.id, p.loops, int(liked))
        learner.train()
        idle_hearing(learner, args.idle_hearing_steps)
    after, after_p, after_x = evaluate()
    half = rated[len(rated) // 2:]
    return UserResult(user.name, args.kit or "default", _rate(before), _rate(after), _rate(after) - _rate(before),
                      _rate(rated), _rate(half), sum(before_p) / len(before_p), sum(after_p) / len(after_p),
                      None, learner.trainer.steps, time.monotonic() - t_start,
                      before_expected=before_x, after_expected=after_x, gain_expected=after_x - before_x)


def replay_datasets(args) -> int:
    """Each dataset's ratings in their order through a fresh critic (learn/taste_start.replay)."""
    import torch

    from deepdrummer_live.cli.dataset import resolve_session_kit
    from deepdrummer_live.learn.search import resolve_device
    from deepdrummer_live.learn.taste_start import replay
    from deepdrummer_live.sound.kit import load_kit
    from deepdrummer_live.storage.dataset import read_csv

    torch.set_num_threads(args.threads)
    results = {}
    for path in args.replay:
        ratings = read_csv(path)
        kit = load_kit(args.kit) if args.kit else resolve_session_kit(None, {}, {r.loop.kit for r in ratings})
        res = replay(kit, ratings, resolve_device(args.device or "cpu"), args.seed)
        results[str(path)] = res
        print(f"{str(path)[-30:]:30s} {res['ratings']:4d} ratings: predicted {res['accuracy']:.2f} "
              f"(first half {res['first_half']:.2f}, second {res['second_half']:.2f}; "
              f"majority-so-far {res['majority_baseline']:.2f})", flush=True)
    if args.json:
        print(json.dumps(results), flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", default="all", help=f"comma list of {', '.join(USERS)}, or 'all'")
    ap.add_argument("--ratings", type=int, default=50)
    ap.add_argument("--eval-loops", type=int, default=25)
    ap.add_argument("--eval-mode", default="good", choices=("good", "explore", "random"))
    ap.add_argument("--kit", default=None, help="kit name or folder (default: the built-in kit)")
    ap.add_argument("--critic", type=Path, default=None,
                    help="start every run from this critic file (run --critic), e.g. a hearing critic made "
                         "for --kit with `deepdrummer-live critic pretrain-hearing --kit DIR --out D`")
    ap.add_argument("--rows", type=int, default=None, help="rows per loop (run --rows) [4]")
    ap.add_argument("--bars", type=int, default=None, help="bars per loop (run --bars) [1]")
    ap.add_argument("--meter", default=None, help="the loops' meter (run --meter) [4/4]")
    ap.add_argument("--critic-kind", default=None, help="grid (default), lean-hearing or paper")
    ap.add_argument("--seconds-per-loop", type=float, default=2.0)
    ap.add_argument("--eval-listen", type=float, default=None,
                    help="seconds the user listens to each judged (before/after) loop before /dd/next "
                         "[--seconds-per-loop]; 0 asks for the next at once, which cuts the daemon's "
                         "anytime search short")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--user-seed", type=int, default=0, help="seed of the users' answer noise")
    ap.add_argument("--seeds", type=int, default=1,
                    help="runs per user: daemon seed and user seed both step by one per run")
    ap.add_argument("--device", default=None)
    ap.add_argument("--inproc", action="store_true", help="drive an Engine in this process (tuning)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for --inproc")
    ap.add_argument("--idle-hearing-steps", type=int, default=200, metavar="STEPS",
                    help="--inproc only: steps of the long hearing pass after each rating, in the daemon worker's "
                         "slices (a kit with no hearing critic; an idle worker learns about 100 a second), 0 for none")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="--inproc only: override a LEAN_CONFIG field (e.g. --set lr=3e-4)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for any one answer")
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    ap.add_argument("--keep-state", action="store_true", help="keep the daemons' state dirs")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    ap.add_argument("--replay", type=Path, action="append", default=[], metavar="DATASET",
                    help="replay a participant's exported ratings (a `dataset export` folder) instead of users")
    args = ap.parse_args(argv)
    if args.eval_listen is None:
        args.eval_listen = args.seconds_per_loop
    # A SIGTERM (kill, a timeout) unwinds like Ctrl-C, so the running daemon is stopped, not orphaned
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.replay:
        return replay_datasets(args)
    names = [*USERS, *SOUND_USERS] if args.users == "all" else [n.strip() for n in args.users.split(",") if n.strip()]
    results = []
    print(f"{'user':14s} {'seed':>4s} {'kit':18s} {'before':>6s} {'after':>6s} {'gain':>6s} {'train':>6s} "
          f"{'2nd½':>6s} {'p95ms':>6s} {'secs':>5s} {'gain(E)':>7s} {'vs base':>7s}", flush=True)
    from deepdrummer_live.learn.simuser import base_rate
    from deepdrummer_live.sound.kit import load_kit

    kit = load_kit(args.kit)
    kit_rows = [(x.name, x.note) for x in kit.samples]
    for i in range(args.seeds):  # every user once before any user twice: a cut-short run still covers all
        for name in names:
            run_args = argparse.Namespace(**{**vars(args), "seed": args.seed + i})
            user = make_user(name, args.user_seed + i, kit=kit)
            res = run_inproc_user(user, run_args) if args.inproc else run_osc_user(user, run_args)
            res.seed = run_args.seed
            res.base = base_rate(user, kit_rows)
            res.gain_vs_base = res.after_expected - res.base
            results.append(res)
            p95 = f"{res.rating_to_next_ms_p95:6.0f}" if res.rating_to_next_ms_p95 is not None else "     -"
            print(f"{res.user:14s} {res.seed:4d} {Path(res.kit).name[:18]:18s} {res.before:6.2f} {res.after:6.2f} "
                  f"{res.gain:+6.2f} {res.liked_in_training:6.2f} {res.liked_last_half:6.2f} {p95} {res.seconds:5.0f}"
                  f" {res.gain_expected:+7.2f} {res.gain_vs_base:+7.2f}"
                  + (f"  errors: {res.errors}" if res.errors else ""), flush=True)
    per_user = summarize(results, names)
    if args.seeds > 1:
        print(f"\n{'user':14s} {'runs':>4s} {'gain mean':>9s} {'sd':>5s} {'min':>6s} {'max':>6s} {'E mean':>7s} "
              f"{'vs base':>7s}", flush=True)
        for name, st in per_user.items():
            print(f"{name:14s} {st['runs']:4d} {st['gain_mean']:+9.2f} {st['gain_sd']:5.2f} {st['gain_min']:+6.2f} "
                  f"{st['gain_max']:+6.2f} {st['gain_expected_mean']:+7.2f} {st['gain_vs_base_mean']:+7.2f}",
                  flush=True)
    gains = [r.gain for r in results]
    user_means = [st["gain_mean"] for st in per_user.values()]
    summary = {
        "protocol": "inproc" if args.inproc else "osc", "kit": args.kit or "default", "ratings": args.ratings,
        "eval_loops": args.eval_loops, "eval_mode": args.eval_mode, "seconds_per_loop": args.seconds_per_loop,
        "eval_listen": args.eval_listen,
        "seed": args.seed, "seeds": args.seeds, "mean_before": sum(r.before for r in results) / len(results),
        "mean_after": sum(r.after for r in results) / len(results), "mean_gain": sum(gains) / len(gains),
        "min_gain": min(gains), "min_user_mean_gain": min(user_means),
        "mean_gain_expected": sum(r.gain_expected for r in results) / len(results),
        "mean_gain_vs_base": sum(r.gain_vs_base for r in results) / len(results), "per_user": per_user,
        "runs": [asdict(r) for r in results],
    }
    print(f"mean before {summary['mean_before']:.2f}  after {summary['mean_after']:.2f}  "
          f"gain {summary['mean_gain']:+.2f}  worst user's mean gain {summary['min_user_mean_gain']:+.2f}  "
          f"worst run {summary['min_gain']:+.2f}  expected gain {summary['mean_gain_expected']:+.2f}  "
          f"after - base rate {summary['mean_gain_vs_base']:+.2f}", flush=True)
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


def summarize(results: list[UserResult], names: list[str]) -> dict:
    """Per user over its runs: gain mean, sample standard deviation, min and max; the mean expected gain."""
    out = {}
    for name in names:
        gains = [r.gain for r in results if r.user == name]
        mean = sum(gains) / len(gains)
        sd = (sum((g - mean) ** 2 for g in gains) / (len(gains) - 1)) ** 0.5 if len(gains) > 1 else 0.0
        expected = [r.gain_expected for r in results if r.user == name]
        vs_base = [r.gain_vs_base for r in results if r.user == name]
        out[name] = {"runs": len(gains), "gain_mean": mean, "gain_sd": sd, "gain_min": min(gains),
                     "gain_max": max(gains), "gain_expected_mean": sum(expected) / len(expected),
                     "gain_vs_base_mean": sum(vs_base) / len(vs_base)}
    return out


if __name__ == "__main__":
    sys.exit(main())
