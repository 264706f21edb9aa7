"""`deepdrummer-live send`: one OSC message to a running daemon, its answer on stdout (contract v1.1).

What a DAW macro, a shell or a stream deck runs on each button press, so it starts fast: it
imports only the standard library, deepdrummer_live.vocab and deepdrummer_live.client (python-osc;
never torch, never the learner), and only when it runs, not when the main parser is built. Exit status:
0 the expected answer came (or, for an address with no answer, no /dd/error did), 1 the daemon
answered /dd/error (its message on stderr), 2 no answer in time, no daemon, or bad usage.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from deepdrummer_live.vocab import INT32_MAX, INT32_MIN, OSC_HOST, OSC_PORT

DEFAULT_HOST = OSC_HOST
DEFAULT_PORT = OSC_PORT
DEFAULT_TIMEOUT = 2.0

ERROR = "/dd/error"

INT_LITERAL = re.compile(r"[-+]?\d+")
DECIMAL_LITERAL = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+(?=[eE]))([eE][-+]?\d+)?")


class SendUsageError(Exception):
    """A bad command line for `send` (exit status 2)."""


def add_parser(sub) -> argparse.ArgumentParser:
    """The `send` subcommand on the main parser (argument typing is ours: argparse sees strings only)."""
    p = sub.add_parser("send", help="send one OSC message to a running daemon and print its answer",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=DEFAULT_HOST, help=f"the daemon's OSC host [{DEFAULT_HOST}]")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the daemon's OSC port [{DEFAULT_PORT}]")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for the answer [{DEFAULT_TIMEOUT:g}]")
    p.add_argument("address", metavar="ADDRESS", help="an OSC address, e.g. /dd/like")
    # REMAINDER: `send /dd/tempo -5` or `send /dd/save --x` pass their arguments through untouched.
    p.add_argument("args", metavar="ARG", nargs=argparse.REMAINDER,
                   help="integer literal -> i, decimal literal -> f, anything else -> s")
    return p


def typed_arg(text: str):
    """An ARG as the contract types it: integer literal -> int (i), decimal literal -> float (f), else str (s)."""
    if INT_LITERAL.fullmatch(text):
        value = int(text)
        if not INT32_MIN <= value <= INT32_MAX:
            raise SendUsageError(f"argument {text}: an OSC integer must be {INT32_MIN} to {INT32_MAX}; "
                                 f"write it as a decimal ({text}.0) to send a float")
        return value
    if DECIMAL_LITERAL.fullmatch(text):
        return float(text)
    return text


def expected_reply(address: str) -> str | None:
    """The answer `send` waits for: the command table's `reply=` for the address (commands.py), else None."""
    from deepdrummer_live.client import EXPECTED_REPLY

    return EXPECTED_REPLY.get(address)


def exchange(host: str, port: int, address: str, args, timeout: float, *, out=sys.stdout, err=sys.stderr) -> int:
    """Send one message, print every answer, return the exit status (0, 1 or 2)."""
    # Imported here: building the main parser (every command does) must not pay for python-osc.
    from deepdrummer_live.client import ClientError, OscClient, Unreachable, format_message, resolve

    try:
        resolve(host, port)
    except ClientError as exc:
        raise SendUsageError(f"--{exc}") from exc  # "--host NAME: cannot resolve it ..."
    expected = expected_reply(address)
    # connect=True: only the daemon's datagrams reach us, and a closed port shows as refused.
    with OscClient(port, host, connect=True) as client:
        try:
            client.send(address, *args)
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                msg = client.receive(left) if left > 0 else None  # datagrams that are not OSC are skipped
                if msg is None:
                    break
                print(format_message(msg.address, msg.args), file=out, flush=True)
                if msg.address == ERROR:
                    print(f"deepdrummer-live send: {msg.args[0] if msg.args else 'error'}", file=err)
                    return 1
                if expected is None or msg.address == expected:
                    # Nothing is expected for other addresses: any answer but an error means it was taken.
                    return 0
        except Unreachable:
            print(f"deepdrummer-live send: no daemon at {host}:{port} (connection refused); start it with "
                  f"`deepdrummer-live run` or give its --host/--port", file=err)
            return 2
    if expected is None:
        return 0
    print(f"deepdrummer-live send: no {expected} from {host}:{port} within {timeout:g} s; is the daemon "
          f"running there (`deepdrummer-live run`)? a longer --timeout helps a busy one", file=err)
    return 2


def cmd_send(args) -> int:
    try:
        if not args.address.startswith("/"):
            raise SendUsageError(f"address {args.address!r} is not an OSC address; it starts with /, "
                                 f"e.g. /dd/like")
        if not 1 <= args.port <= 65535:
            raise SendUsageError(f"--port {args.port}: use a port number 1-65535")
        if not args.timeout > 0:
            raise SendUsageError(f"--timeout {args.timeout:g}: use a number of seconds above 0")
        values = [typed_arg(a) for a in args.args]
        return exchange(args.host, args.port, args.address, values, args.timeout)
    except SendUsageError as exc:
        print(f"deepdrummer-live send: {exc}", file=sys.stderr)
        return 2
