"""`deepdrummer-live critic list|pretrain-hearing`: the shipped pre-trained critics.

`pretrain-hearing` makes, for each built-in kit, the critic a new session on that kit starts
from (for a kit folder of your own, the same file, used with `run --critic FILE`): its trunk has
learnt which drum starts on which step (no rating involved), its like head is zero (P(like) = 0.5
for every loop until the first ratings). It runs on one CPU thread with a fixed seed, so the files
are the same on every run.
"""

from __future__ import annotations

import io
import sys

from deepdrummer_live.errors import UsageError

BUILT_IN_KITS = ("dd-analog", "dd-digital")


def hearing_file_name(kit_name: str) -> str:
    return f"{kit_name}-hearing"


def kit_label(kit: str) -> str:
    """The name a kit's files go by: a built-in kit's name, or a kit folder's own name."""
    from deepdrummer_live.sound.kit import resolve_kit_path

    return resolve_kit_path(kit).name


def hearing_critic_file(kit_name: str, seed: int = 0, steps: int | None = None,
                          loops: int | None = None) -> bytes:
    """The bytes of a kit's shipped hearing critic (deterministic for given arguments)."""
    import dataclasses

    import torch

    from deepdrummer_live.learn.kinds import LEAN
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.sound.kit import load_kit

    torch.set_num_threads(1)  # one thread: the same sums in the same order, the same bytes
    config = LEAN.config  # the critic that hears: what the shipped files teach it
    config = dataclasses.replace(config, hearing_pass_steps=steps or config.shipped_hearing_steps,
                                 hearing_pass_loops=loops or config.shipped_hearing_loops)
    learner = Learner(load_kit(kit_name), torch.device("cpu"), seed, config=config, chains=1, iters=1)
    learner.learn_to_hear()
    buf = io.BytesIO()
    torch.save(learner.critic_state(), buf)
    return buf.getvalue()


def cmd_critic(args) -> int:
    from deepdrummer_live.learn.kinds import shipped_dir, shipped_names, shipped_path

    if args.critic_command == "list":
        for name in shipped_names():
            print(f"{name}\t{shipped_path(name)}")
        return 0
    if args.critic_command != "pretrain-hearing":
        raise UsageError("critic: give a subcommand: `deepdrummer-live critic list` or "
                         "`deepdrummer-live critic pretrain-hearing`")
    kits = args.kit or list(BUILT_IN_KITS)
    out = args.out if args.out is not None else shipped_dir()  # in a source checkout: the package data
    out.mkdir(parents=True, exist_ok=True)
    for kit_name in kits:
        data = hearing_critic_file(kit_name, args.seed, args.steps, args.loops)
        path = out / f"{hearing_file_name(kit_label(kit_name))}.pt"
        path.write_bytes(data)
        print(f"{path}\t{len(data)} bytes", file=sys.stdout)
    return 0
