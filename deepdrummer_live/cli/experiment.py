"""`deepdrummer-live experiment --participant CODE`: the daemon (every `run` flag) with the paper's
experiment plan (see deepdrummer_live/experiment.py); each participant's session and results live
in `<state-dir>/participants/<CODE>/`, which `report --state-dir` draws across participants."""

from __future__ import annotations

import functools
from pathlib import Path


def add_parser(sub) -> None:
    # Every `run` flag, so the experiment runs on any surface (OSC, terminal, page, controller).
    p = sub.add_parser("experiment", parents=[sub.choices["run"]], add_help=False, conflict_handler="resolve",
                       help="the paper's experiment for one participant: phase I, then a blind phase II")
    p.add_argument("--participant", required=True, help="a code for the participant (letters, digits, - _)")
    p.add_argument("--phase1", type=int, default=40, help="ratings while the critic learns [40]")
    p.add_argument("--phase2", type=int, default=20, help="blind ratings, half good half random [20]")


def cmd(args) -> int:
    from deepdrummer_live.cli.flags import flag_errors
    from deepdrummer_live.cli.run import cmd_run
    from deepdrummer_live.experiment import (
        ExperimentSession,
        check_participant,
        check_phase1,
        check_phase2,
        participant_dir,
    )
    from deepdrummer_live.paths import default_state_dir

    root = args.state_dir or default_state_dir() / "experiment"
    # bad values end here, before the daemon starts, each worded with its flag
    for flag, check, value in (("--participant", check_participant, args.participant),
                               ("--phase1", check_phase1, args.phase1), ("--phase2", check_phase2, args.phase2)):
        with flag_errors(flag):
            check(value)
    args.state_dir = participant_dir(Path(root), args.participant)
    planned = functools.partial(ExperimentSession, participant=args.participant, phase1=args.phase1,
                                phase2=args.phase2, plan_seed=args.seed if args.seed is not None else 0)
    return cmd_run(args, session_factory=planned)
