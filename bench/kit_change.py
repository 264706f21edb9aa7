"""Does a taste survive a kit change? (issue: a critic that learns what the performer hears, point 4)

For each simulated user: a critic learns the user's taste from `--ratings` ratings on kit A (in process,
the learning bench's protocol: explore, rate, train). Then a session starts on kit B from that critic
(`run --kit B --critic A/critic.pt`) and, beside it, a session on B from a fresh critic. Both propose
`--eval-loops` loops in `good` mode, judged by the same user without rating: the like-rate of each, at
once and after `--after` more ratings on B.

    .venv/bin/python bench/kit_change.py --kit-a dd-analog --kit-b dd-digital --users all
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from deepdrummer_live.learn import checkpoint  # noqa: E402
from deepdrummer_live.learn.learner import Learner  # noqa: E402
from deepdrummer_live.learn.simuser import USERS, hear, make_user  # noqa: E402
from deepdrummer_live.sound.kit import load_kit  # noqa: E402


def as_msg(learner: Learner, proposal, loop_id: int):
    return hear(learner.record(proposal.loops, id=loop_id, p_like=proposal.p_like))


def rate(learner: Learner, user, n: int, start: int) -> None:
    for i in range(start, start + n):
        p = learner.propose("explore", False)
        learner.set_rating(i, p.loops, int(user.judge(as_msg(learner, p, i))))
        learner.train()


def like_rate(learner: Learner, user, n: int) -> float:
    return sum(user.judge(as_msg(learner, learner.propose("good", False), 10**6 + i)) for i in range(n)) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kit-a", default="dd-analog")
    ap.add_argument("--kit-b", default="dd-digital")
    ap.add_argument("--users", default="all")
    ap.add_argument("--ratings", type=int, default=50, help="ratings on kit A")
    ap.add_argument("--after", type=int, default=10, help="ratings on kit B before the second measurement")
    ap.add_argument("--eval-loops", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kit_a, kit_b = load_kit(args.kit_a), load_kit(args.kit_b)
    names = list(USERS) if args.users == "all" else args.users.split(",")
    rows = []
    print(f"{'user':14s} {'carried':>8s} {'fresh':>6s} {'carried+' + str(args.after):>10s} "
          f"{'fresh+' + str(args.after):>8s}", flush=True)
    for name in names:
        user = make_user(name, args.seed)
        teacher = Learner(kit_a, torch.device("cpu"), args.seed)
        rate(teacher, user, args.ratings, 0)
        carried = Learner(kit_b, torch.device("cpu"), args.seed + 1)
        with tempfile.TemporaryDirectory() as tmp:  # `run --kit B --critic A/critic.pt`
            path = Path(tmp) / "critic.pt"
            checkpoint.write(teacher.checkpoint_contents()[None], path)
            checkpoint.start_from(carried, path)
        fresh = Learner(kit_b, torch.device("cpu"), args.seed + 1)
        row = {"user": name, "carried": like_rate(carried, user, args.eval_loops),
               "fresh": like_rate(fresh, user, args.eval_loops)}
        rate(carried, user, args.after, 10**7)
        rate(fresh, user, args.after, 10**7)
        row["carried_after"] = like_rate(carried, user, args.eval_loops)
        row["fresh_after"] = like_rate(fresh, user, args.eval_loops)
        rows.append(row)
        print(f"{name:14s} {row['carried']:8.2f} {row['fresh']:6.2f} {row['carried_after']:10.2f} "
              f"{row['fresh_after']:8.2f}", flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("carried", "fresh", "carried_after", "fresh_after")}
    print(f"{'mean':14s} {mean['carried']:8.2f} {mean['fresh']:6.2f} {mean['carried_after']:10.2f} "
          f"{mean['fresh_after']:8.2f}")
    if args.json:
        print(json.dumps({"kit_a": args.kit_a, "kit_b": args.kit_b, "users": rows, "mean": mean}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
