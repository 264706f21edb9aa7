"""`deepdrummer-live`: run (the daemon), bench, kits build, doctor, report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from deepdrummer_live import __version__
from deepdrummer_live.cli import send
from deepdrummer_live.errors import DeepDrummerError, StateError, UsageError
from deepdrummer_live.paths import default_state_dir, user_kits_dir
from deepdrummer_live.vocab import (
    AUDIO_BACKENDS,
    AUDIO_MODES,
    CLOCKS,
    CRITIC_KINDS,
    DEFAULT_TEMPO,
    METERS,
    MIDI_BACKENDS,
    OSC_HOST,
    OSC_PORT,
    SWITCH_POINTS,
    WEB_HOST,
    WEB_PORT,
)

log = logging.getLogger("deepdrummer_live")


class OneLineParser(argparse.ArgumentParser):
    """Bad flags end with exit status 2 and one line naming the value and the fix."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9001)")
    return host, int(port)


def port_number(value: str, off: bool = False) -> int:
    """A UDP/TCP port 1-65535 from a flag's text (with `off`, 0 too: the surface is turned off)."""
    if not value.isdigit() or not (0 if off else 1) <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number 1-65535" + (" (or 0 for off)" if off else ""))
    return int(value)


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 3600:  # nan fails too
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration; give seconds above 0 (e.g. 3)")
    return seconds


def positive_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a count; give a whole number from 1 (e.g. 40)")
    return int(value)


def half_life(value: str) -> float:
    """Ratings (0 or more; 0 or `none`: every rating weighs the same)."""
    if value.lower() == "none":
        return 0.0
    try:
        n = float(value)
    except ValueError:
        n = float("nan")
    if not 0 <= n <= 1e6:  # nan fails too
        raise argparse.ArgumentTypeError(f"{value!r} is not a half-life; give a number of ratings, 0 or more "
                                         f"(e.g. 20), or none")
    return n


def port_or_off(value: str) -> int:
    return port_number(value, off=True)


def add_learner_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kit", default=None,
                   help="a built-in kit by name (dd-analog, dd-digital), or any folder of one-shots")
    p.add_argument("--device", default="auto", help="torch device: auto|cpu|cuda|mps [auto]")
    p.add_argument("--seed", type=int, default=None, help="make generation reproducible")
    p.add_argument("--paper", action="store_true",
                   help="the paper's exact path: its critic, 44.1 kHz, one candidate at a time "
                        "(the same as --critic-kind paper)")
    p.add_argument("--critic-kind", default=None, choices=CRITIC_KINDS,
                   help="grid: reads the loop as the generator wrote it (default); lean-hearing: hears the "
                        "rendered mix; paper: the paper's critic [grid, or the kind of --critic / the state "
                        "dir's critic]")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="deepdrummer-live", description=__doc__)
    parser.add_argument("--version", action="version", version=f"deepdrummer-live {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=OneLineParser)

    run = sub.add_parser("run", help="the daemon: generate, filter, play and learn until SIGINT/SIGTERM")
    add_learner_flags(run)
    run.add_argument("--state-dir", type=Path, default=None, help="ratings, checkpoints and the loop library")
    run.add_argument("--osc-host", default=OSC_HOST)
    run.add_argument("--osc-port", type=port_number, default=OSC_PORT)
    run.add_argument("--osc-allow", action="append", default=[], metavar="CIDR",
                     help="also serve OSC from these networks (loopback always; others are dropped without it)")
    run.add_argument("--notify", action="append", default=[], type=host_port, metavar="HOST:PORT",
                     help="pre-subscribed receiver of outbound OSC (repeatable)")
    run.add_argument("--midi-backend", choices=MIDI_BACKENDS, default=None)
    run.add_argument("--midi-out", default="DeepDrummer")
    run.add_argument("--midi-in", default=None)
    run.add_argument("--midi-offset-ms", type=float, default=0.0)
    run.add_argument("--controller", default=None,
                     help="controller mapping: a built-in name (akai-mpd218, generic, ...) or a .toml file")
    run.add_argument("--clock", choices=CLOCKS, default="internal")
    run.add_argument("--tempo", type=float, default=None,
                     help=f"internal clock tempo [the resumed session's, else {DEFAULT_TEMPO:g}]")
    run.add_argument("--swing", type=float, default=None, metavar="AMOUNT",
                     help="odd 16ths late by AMOUNT x one step, 0.0-0.5 [0.0, or the resumed session's]")
    run.add_argument("--note-map", default=None, metavar="NAME|FILE",
                     help="where each drum role goes: a map in data/notemaps (gm, drum-rack) or a .toml [gm]")
    run.add_argument("--audio", choices=AUDIO_MODES, default=None)
    run.add_argument("--audio-backend", choices=AUDIO_BACKENDS, default=None)
    run.add_argument("--autoplay", action="store_true", help="start the transport at once (internal clock)")
    run.add_argument("--headless", action="store_true", help="no terminal surface; logs to stderr")
    run.add_argument("--web-port", type=port_or_off, default=None,
                     help=f"the rating page's port [{WEB_PORT}; 0 turns it off]")
    run.add_argument("--web-host", default=WEB_HOST,
                     help=f"the rating page's address [{WEB_HOST}]; any other needs the printed token")
    run.add_argument("--rows", type=int, default=None, help="rows per loop, 1-8 [4, or the resumed session's]")
    run.add_argument("--bars", type=int, default=None, help="bars per loop (a phrase): 1, 2 or 4 [1]")
    run.add_argument("--meter", default=None, help=f"the loops' meter: {', '.join(METERS)} [4/4]")
    run.add_argument("--switch", default=None, choices=SWITCH_POINTS,
                     help="while playing, a new loop starts at the playing phrase's end or its next bar [phrase]")
    run.add_argument("--critic", default=None, metavar="PATH",
                     help="a new session starts from this critic: a critic.pt of another state dir, that "
                          "state dir, or a shipped critic's name (deepdrummer-live critic list)")
    run.add_argument("--profile", default=None, metavar="NAME",
                     help="the taste profile to start with, created if new (1-32 of letters, digits, -, _) "
                          "[the one the last run on this state dir ended with, else default]")
    run.add_argument("--half-life", type=half_life, default=None, metavar="N",
                     help="recent ratings weigh more: a rating N ratings old weighs half (0: all the same) "
                          "[10 for the default critic, 0 for --paper; docs/learning.md]")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    bench = sub.add_parser("bench", help="measure throughput and latency; last stdout line is JSON")
    add_learner_flags(bench)
    bench.add_argument("--json", action="store_true", help="print the result as one JSON line")
    bench.add_argument("--seconds", type=positive_seconds, default=3.0, help="time per throughput measurement")
    bench.add_argument("--ratings", type=positive_count, default=40, help="ratings for the latency measurement")

    critic = sub.add_parser("critic", help="shipped pre-trained critics")
    critic_sub = critic.add_subparsers(dest="critic_command", parser_class=OneLineParser)
    critic_sub.add_parser("list", help="the shipped critics, usable as run --critic NAME")
    hearing = critic_sub.add_parser("pretrain-hearing",
                                    help="(re)make a kit's hearing critic, deterministically: the built-in kits' "
                                         "shipped ones, or one for your own kit folder (run --critic FILE)")
    hearing.add_argument("--kit", action="append", default=None,
                         help="a built-in kit or a kit folder (repeatable) [every built-in kit]")
    hearing.add_argument("--out", type=Path, default=None, help="folder to write to [the package's critics/]")
    hearing.add_argument("--steps", type=int, default=None, help="hearing optimizer steps [critic default]")
    hearing.add_argument("--loops", type=int, default=None, help="random loops to learn from [critic default]")
    hearing.add_argument("--seed", type=int, default=0)

    kits = sub.add_parser("kits", help="the built-in synthesized kits")
    kits_sub = kits.add_subparsers(dest="kits_command", parser_class=OneLineParser)
    kits_build = kits_sub.add_parser("build", help="synthesize the built-in kits again (deterministic, "
                                     "byte-identical to the shipped ones)")
    kits_build.add_argument("--out", type=Path, default=None,
                            help=f"folder to write the kits into [{user_kits_dir()}]")

    doctor = sub.add_parser("doctor", help="check MIDI, audio, torch, kit, state dir and ports")
    add_learner_flags(doctor)
    doctor.add_argument("--state-dir", type=Path, default=None)
    doctor.add_argument("--osc-port", type=port_number, default=OSC_PORT)

    send.add_parser(sub)
    sub.add_parser("commands", help="every command of the one table (OSC /dd/..., keys, controller actions, page)")

    profiles = sub.add_parser("profiles", help="the taste profiles of a state dir: index, name, ratings")
    profiles.add_argument("--state-dir", type=Path, default=None)

    report = sub.add_parser("report", help="PNG plots of a session")
    report.add_argument("--state-dir", type=Path, default=None)
    report.add_argument("--out", type=Path, default=None, help="output folder [<state-dir>/report]")
    report.add_argument("--profile", default=None, metavar="NAME",
                        help="only the ratings of this taste profile [every rating]")
    for module in plugin_commands().values():  # commands that register themselves: dataset, pretrain
        module.add_parser(sub)
    return parser


def plugin_commands() -> dict:
    """Subcommand name -> its module (with `add_parser(sub)` and `cmd(args)`); light imports only."""
    from deepdrummer_live.cli import dataset, experiment, pretrain

    return {"dataset": dataset, "pretrain": pretrain, "experiment": experiment}


def cmd_kits(args) -> int:
    from deepdrummer_live.sound.synth import build_kits

    if args.kits_command != "build":
        raise UsageError("kits: give a subcommand: `deepdrummer-live kits build`")
    from deepdrummer_live.progress import bar

    folders = build_kits(args.out or user_kits_dir(), progress=bar("synthesizing kits"))
    print("\n".join(str(p) for p in folders))
    return 0


def cmd_profiles(args) -> int:
    """`index name ratings`, one profile a line, in the order MIDI Program Change numbers them."""
    from deepdrummer_live.storage.store import Store

    state_dir = (args.state_dir or default_state_dir()).expanduser()
    if not (state_dir / "state.sqlite").exists():
        raise StateError(f"--state-dir {str(state_dir)!r} has no session (no state.sqlite); pass the folder "
                         f"`deepdrummer-live run --state-dir` used")
    store = Store(state_dir)  # an older state dir is brought up to date, as `run` would: `default` holds its ratings
    try:
        for i, (name, count) in enumerate(store.profiles()):
            print(f"{i} {name} {count}")
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["send"]:  # a DAW's button press: build only its parser, import no other command's module
        sub = OneLineParser(prog="deepdrummer-live").add_subparsers(dest="command", parser_class=OneLineParser)
        return send.cmd_send(send.add_parser(sub).parse_args(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "run":
            from deepdrummer_live.cli.run import cmd_run

            return cmd_run(args)
        if args.command == "bench":
            from deepdrummer_live.cli.bench import cmd_bench

            return cmd_bench(args)
        if args.command == "kits":
            return cmd_kits(args)
        if args.command == "critic":
            from deepdrummer_live.cli.critic import cmd_critic

            return cmd_critic(args)
        if args.command == "doctor":
            from deepdrummer_live.cli.doctor import cmd_doctor

            return cmd_doctor(args)
        if args.command == "report":
            from deepdrummer_live.cli.report import cmd_report

            return cmd_report(args)
        if args.command == "profiles":
            return cmd_profiles(args)
        if args.command == "commands":
            from deepdrummer_live import commands

            print(commands.table())
            return 0
        if args.command in plugin_commands():
            return plugin_commands()[args.command].cmd(args)
    except (UsageError, StateError) as exc:
        print(f"deepdrummer-live: {exc}", file=sys.stderr)
        return 2
    except DeepDrummerError as exc:
        print(f"deepdrummer-live: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
