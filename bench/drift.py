"""Drift benchmark: does the critic follow a performer who changes their mind?

In process (a `Learner`, as `bench/learning.py --inproc`), per pair of simulated users A -> B and seed:
`--before` ratings (default 30) by A in `explore` mode (the critic learns A), then A's taste is
replaced by B's, and `--after` ratings (default 20) by B in `good` mode: the critic proposes what
it thinks is liked, B rates it, the critic learns. The figure is B's like-rate over those `--after`
loops, for each recency half-life given (0: every rating weighs the same, the critic before this
benchmark). A consistent user (B = A) is run too, so a half-life that forgets too fast shows.

    .venv/bin/python bench/drift.py --half-lives 0,10,20,40 --seeds 2 --json

`--pool N` measures the same thing many times faster, for choosing the default: instead of the search,
the loops come from a fixed pool of N random loops of the prior, featurized once per seed (the trunk
is frozen, so what the like head sees of each is computed once): `explore` takes a random unrated
loop of the pool, `good` the unrated loop with the highest P(like). Every other part (the critic's
hearing, the fit of the like head, the recency weights, the simulated users) is the daemon's.

    .venv/bin/python bench/drift.py --pool 2048 --pairs all --half-lives 0,5,10,20,40 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepdrummer_live.learn.simuser import hear, make_user  # noqa: E402

# Tastes that disagree (the verse wants one groove, the chorus another)
PAIRS = (("backbeat", "fotf"), ("sparse", "busy"), ("no_cymbals", "percussionist"), ("offbeat_hats", "syncopation"))


def run(first: str, second: str, half_life: float, seed: int, args) -> dict:
    import torch

    from deepdrummer_live.learn import checkpoint
    from deepdrummer_live.learn.critic import LEAN_CONFIG, with_overrides
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.sound.kit import load_kit

    torch.set_num_threads(args.threads)
    kit = load_kit(args.kit)
    learner = Learner(kit, torch.device("cpu"), seed, config=with_overrides(LEAN_CONFIG, half_life=half_life),
                     chains=args.chains, iters=args.iters)
    checkpoint.choose_start(learner)
    users = [make_user(first, seed), make_user(second, seed)]
    judged = []
    for i in range(args.before + args.after):
        user = users[0] if i < args.before else users[1]
        p = learner.propose("explore" if i < args.before else "good", False)
        liked = user.judge(hear(learner.record(p.loops, id=i + 1, p_like=p.p_like)))
        judged.append(liked)
        learner.set_rating(i + 1, p.loops, int(liked))
        learner.train()
    after = judged[args.before:]
    return {"from": first, "to": second, "half_life": half_life, "seed": seed,
            "like_rate_after": sum(after) / len(after), "like_rate_before": sum(judged[:args.before]) / args.before}


_POOLS: dict = {}


def pool_for(seed: int, n: int, args):
    """(learner's kit, pool Loops, the like head's inputs [n, head_in], the loops as users hear them), made once."""
    if (seed, n) in _POOLS:
        return _POOLS[(seed, n)]
    import torch

    from deepdrummer_live.learn import checkpoint
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.sound import pattern
    from deepdrummer_live.sound.kit import load_kit

    torch.set_num_threads(args.threads)
    learner = Learner(load_kit(args.kit), torch.device("cpu"), seed)
    checkpoint.choose_start(learner)
    gen = torch.Generator().manual_seed(1000 + seed)
    loops = pattern.random_loops(n, len(learner.kit), gen, "cpu", prior=learner.prior)
    with torch.no_grad():
        feats = learner.scorer.features(loops)
    msgs = []
    for i in range(n):
        msgs.append(hear(learner.record(loops.take(i), id=i + 1, p_like=0.5)))
    _POOLS[(seed, n)] = (learner, feats, msgs)
    return _POOLS[(seed, n)]


def run_pool(first: str, second: str, half_life: float, seed: int, args) -> dict:
    import torch
    import torch.nn.functional as F

    from deepdrummer_live.learn.critic import LEAN_CONFIG, Trainer, with_overrides

    learner, feats, msgs = pool_for(seed, args.pool, args)
    model = learner.model
    fresh = {k: v.clone() for k, v in model.mlp.state_dict().items()}
    model.mlp.load_state_dict(fresh)  # each run starts untrained (the shared learner's head is reset)
    with torch.no_grad():
        heard = torch.cat([model.head_input(feats[i:i + 256]) for i in range(0, len(feats), 256)])
    trainer = Trainer(with_overrides(LEAN_CONFIG, half_life=half_life), model, None,
                      torch.Generator().manual_seed(seed))
    users = [make_user(first, seed), make_user(second, seed)]
    rng = torch.Generator().manual_seed(2000 + seed)
    rated = torch.zeros(len(msgs), dtype=torch.bool)
    judged = []
    for i in range(args.before + args.after):
        if i < args.before:  # explore: a random loop not rated yet
            free = (~rated).nonzero().flatten()
            pick = int(free[torch.randint(len(free), (1,), generator=rng)])
        else:  # good: the critic's best loop not rated yet
            with torch.no_grad():
                p = F.softmax(model.mlp(heard), dim=1)[:, 1]
            pick = int(torch.where(rated, -1.0, p).argmax())
        rated[pick] = True
        liked = (users[0] if i < args.before else users[1]).judge(msgs[pick])
        judged.append(liked)
        trainer.set_example(pick, feats[pick], int(liked))
        trainer.train()
    model.mlp.load_state_dict(fresh)
    after = judged[args.before:]
    return {"from": first, "to": second, "half_life": half_life, "seed": seed,
            "like_rate_after": sum(after) / len(after), "like_rate_before": sum(judged[:args.before]) / args.before}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--half-lives", default="0,10,20,40")
    ap.add_argument("--pairs", default=",".join(f"{a}>{b}" for a, b in PAIRS),
                    help="comma list of A>B (A's taste, then B's); A>A is a user who does not change")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--before", type=int, default=30)
    ap.add_argument("--after", type=int, default=20)
    ap.add_argument("--kit", default=None)
    ap.add_argument("--chains", type=int, default=None, help="search chains [the learner's CPU budget]")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pool", type=int, default=0, help="loops from a fixed pool of N (fast; see above)")
    ap.add_argument("--quiet", action="store_true", help="no line per run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    half_lives = [float(h) for h in args.half_lives.split(",")]
    if args.pairs == "all":  # every change of mind between two different users, and every user who keeps it
        from deepdrummer_live.learn.simuser import USERS

        pairs = [(a, b) for a in USERS for b in USERS]
    else:
        pairs = [tuple(p.split(">")) for p in args.pairs.split(",")]
    results = []
    t0 = time.monotonic()
    for a, b in pairs:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for h in half_lives:
                r = (run_pool if args.pool else run)(a, b, h, seed, args)
                results.append(r)
                if not args.quiet:
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
