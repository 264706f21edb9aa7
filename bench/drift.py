"""Drift benchmark: does the critic follow a performer who changes their mind?

In process (a `Learner`, as `bench/learning.py --inproc`), per pair of simulated users A -> B and seed:
`--before` ratings (default 30) by A in `explore` mode (the critic learns A), then A's taste is
replaced by B's, and `--after` ratings (default 20) by B in `good` mode: the critic proposes what
it thinks is liked, B rates it, the critic learns. The figure is B's like-rate over those `--after`
loops, for each recency half-life given (0: every rating weighs the same, the critic before this
benchmark). A consistent user (B = A) is run too, so a half-life that forgets too fast shows.

    .venv/bin/python bench/drift.py --half-lives 0,10,20,40 --seeds 2 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepdrummer_live.learn.simuser import make_user, parse_loop  # noqa: E402

# Tastes that disagree (the verse wants one groove, the chorus another)
PAIRS = (("backbeat", "fotf"), ("sparse", "busy"), ("no_cymbals", "percussionist"), ("offbeat_hats", "syncopation"))


def run(first: str, second: str, half_life: float, seed: int, args) -> dict:
    import torch

    from deepdrummer_live.learn.critic import LEAN_CONFIG, with_overrides
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.sound.kit import load_kit

    torch.set_num_threads(args.threads)
    kit = load_kit(args.kit)
    engine = Learner(kit, torch.device("cpu"), seed, config=with_overrides(LEAN_CONFIG, half_life=half_life),
                     chains=args.chains, iters=args.iters)
    engine.choose_start()
    users = [make_user(first, seed), make_user(second, seed)]
    judged = []
    for i in range(args.before + args.after):
        user = users[0] if i < args.before else users[1]
        p = engine.propose("explore" if i < args.before else "good", False)
        names, notes, _, steps = engine.describe(p.loops)
        loop_args: list = [i + 1, p.p_like, 120.0, len(steps[0])]
        for n, note, st in zip(names, notes, steps):
            loop_args += [n, note, st]
        liked = user.judge(parse_loop(loop_args, [i + 1, *engine.levels(p.loops)]))
        judged.append(liked)
        engine.set_rating(i + 1, p.loops, int(liked))
        engine.train()
    after = judged[args.before:]
    return {"from": first, "to": second, "half_life": half_life, "seed": seed,
            "like_rate_after": sum(after) / len(after), "like_rate_before": sum(judged[:args.before]) / args.before}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--half-lives", default="0,10,20,40")
    ap.add_argument("--pairs", default=",".join(f"{a}>{b}" for a, b in PAIRS),
                    help="comma list of A>B (A's taste, then B's); A>A is a user who does not change")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--before", type=int, default=30)
    ap.add_argument("--after", type=int, default=20)
    ap.add_argument("--kit", default=None)
    ap.add_argument("--chains", type=int, default=None, help="search chains [the engine's CPU budget]")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    half_lives = [float(h) for h in args.half_lives.split(",")]
    pairs = [tuple(p.split(">")) for p in args.pairs.split(",")]
    results = []
    t0 = time.monotonic()
    for a, b in pairs:
        for seed in range(1, args.seeds + 1):
            for h in half_lives:
                r = run(a, b, h, seed, args)
                results.append(r)
                print(f"{a:>13} -> {b:<13} seed {seed} half-life {h:>4g}: like-rate of the {args.after} good "
                      f"loops after the switch {r['like_rate_after']:.2f}  ({time.monotonic() - t0:.0f} s)",
                      flush=True)
    summary = {}
    for h in half_lives:
        rows = [r for r in results if r["half_life"] == h]
        changed = [r["like_rate_after"] for r in rows if r["from"] != r["to"]]
        same = [r["like_rate_after"] for r in rows if r["from"] == r["to"]]
        summary[f"{h:g}"] = {"after_switch": sum(changed) / len(changed) if changed else None,
                             "consistent": sum(same) / len(same) if same else None, "runs": len(rows)}
        print(f"half-life {h:>4g}: mean like-rate after the switch {summary[f'{h:g}']['after_switch']}, "
              f"consistent users {summary[f'{h:g}']['consistent']}")
    if args.json:
        print(json.dumps({"summary": summary, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
