"""The real daemon as a subprocess, for tests: what the pytest plugin and the project's own tests share.

`Daemon` runs `deepdrummer-live run --headless` on a free OSC port with a state dir, the rating page
off, MIDI and audio off unless asked, and a seed; its stdout and stderr go to a log file. Started
with a client (`client=OscClient()`), that client is subscribed from the daemon's first message on
(`--notify`), so the first /dd/loop is never missed. Imports neither torch nor pytest.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import deepdrummer_live
from deepdrummer_live.client import ClientError, Message, OscClient
from deepdrummer_live.errors import DeepDrummerError

STARTUP_TIMEOUT_S = 180.0  # a deadline, not a wait: a busy CI machine takes minutes to import torch
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 3000


class DaemonExited(DeepDrummerError, RuntimeError):
    """The daemon process ended while it was expected to run (its log tail is in the message)."""


class DaemonNotReady(DeepDrummerError, TimeoutError):
    """The daemon did not become ready (answer /dd/status with a current loop) before the deadline."""


def free_udp_port() -> int:
    return _free_port(socket.SOCK_DGRAM)


def free_tcp_port() -> int:
    return _free_port(socket.SOCK_STREAM)


def _free_port(kind: int) -> int:
    """A port the system just gave out; the daemon binds it a moment later (a race only with programs that
    pick fixed ports in the same range, which the system's ephemeral range avoids)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    """Nothing is bound to 127.0.0.1:port (of that kind) now."""
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def daemon_command() -> list[str]:
    """`python -m deepdrummer_live.cli.main` with this interpreter: the same environment as the test."""
    return [sys.executable, "-m", "deepdrummer_live.cli.main"]


def source_root() -> Path | None:
    """The checkout this package was imported from (it has a pyproject.toml), or None for an installed one.

    A daemon started from elsewhere must import this same copy: an editable install of another checkout
    in the same environment would otherwise win (it once ran another worktree's critic in the benches)."""
    root = Path(deepdrummer_live.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


class Daemon:
    """`deepdrummer-live run --headless` on a free port and a state dir.

    extra: more `run` flags. kit: `--kit`. midi/audio: `--midi-backend` / `--audio` [none]. A
    `--web-port` in extra overrides the default 0 (off: daemons in parallel must not race for 9080).
    client: an OscClient that is subscribed with `--notify` and aimed at the daemon; `send`, `wait`,
    `expect` use it. cwd: the daemon's working folder [the state dir's parent]. log_path: where its
    output goes [`<state dir>-daemon.log` beside the state dir]. command: what runs `run` [this
    Python with `-m deepdrummer_live.cli.main`, importing this same copy of the package].
    """

    def __init__(self, state_dir: Path, *extra: str, port: int | None = None, seed: int | None = 1,
                 midi: str = "none", audio: str = "none", kit: str | os.PathLike | None = None,
                 env: dict | None = None, cwd: Path | None = None, log_path: Path | None = None,
                 client: OscClient | None = None, command: Sequence[str] | None = None):
        self.port = port or free_udp_port()
        self.state_dir = Path(state_dir)
        self.client = client
        web = () if "--web-port" in extra else ("--web-port", "0")
        notify = ("--notify", f"127.0.0.1:{client.local_port}") if client is not None else ()
        if client is not None:
            client.target = ("127.0.0.1", self.port)
        self.args = [*(command or daemon_command()), "run", "--headless", "--state-dir", str(self.state_dir),
                     "--osc-port", str(self.port), "--midi-backend", midi, "--audio", audio,
                     *(("--seed", str(seed)) if seed is not None else ()), *web, *notify,
                     *(("--kit", str(kit)) if kit is not None else ()), *extra]
        self.env = {**os.environ, **(env or {})}
        root = source_root()
        if command is None and root is not None:  # a command of the caller's own imports what it imports
            self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), self.env.get("PYTHONPATH")) if p)
        self.cwd = Path(cwd) if cwd is not None else self.state_dir.parent
        self.log_path = Path(log_path) if log_path else self.state_dir.parent / f"{self.state_dir.name}-daemon.log"
        self.proc: subprocess.Popen | None = None
        self.log = None
        self.stopped_by_caller = False  # stop(), shutdown() or kill9() was called: its end was asked for

    @property
    def osc_port(self) -> int:
        return self.port

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout: float = STARTUP_TIMEOUT_S) -> Daemon:
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Until the daemon is ready: with a client, until its first /dd/loop reached the client (left there for
        the test to take); without, until it answers /dd/status with a current loop. DaemonExited when it
        ends first, DaemonNotReady after `timeout` s.

        With a client nothing is sent: every reply also goes to subscribers, so probes would leave stale
        /dd/status or /dd/pong messages in the test's backlog (and a flood of them can overflow the socket's
        receive buffer and drop the very /dd/loop waited for)."""
        deadline = time.monotonic() + timeout
        if self.client is not None:
            if self.client.wait("/dd/loop", timeout, take=False, stop=lambda: not self.running()) is not None:
                return
        else:
            with OscClient(self.port) as probe:
                while time.monotonic() < deadline and self.running():
                    probe.send("/dd/status")
                    status = probe.wait("/dd/status", 0.5, stop=lambda: not self.running())
                    if status is not None and status[2] >= 0:  # a first loop is current
                        return
                    time.sleep(0.1)  # poll interval: each probe is answered to every subscriber too
        self._check_alive("during start-up")
        raise DaemonNotReady(f"daemon not ready in {timeout:g} s (no first loop): {self.output()}")

    def _check_alive(self, when: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonExited(f"daemon exited with {self.proc.returncode} {when}: {self.output()}")

    # --- talking to it (through the client) --------------------------------------------------------

    def _client(self) -> OscClient:
        if self.client is None:
            raise ClientError("this Daemon was made without a client; pass client=OscClient() to talk to it")
        return self.client

    def send(self, address: str, *args, types: str | None = None) -> None:
        """One OSC message to the daemon from the subscribed client's socket."""
        self._client().send(address, *args, types=types)

    def wait(self, address: str, timeout: float = 5.0, where=None) -> tuple | None:
        """The args of the next message to `address` not yet taken, or None after `timeout` s (or once the
        daemon has exited: nothing more will come)."""
        return self._client().wait(address, timeout, where, stop=lambda: not self.running())

    def expect(self, what, timeout: float = 5.0, where=None):
        """As OscClient.expect (NoReply after `timeout`), ending early when the daemon exits."""
        return self._client().expect(what, timeout, where, stop=lambda: not self.running())

    def drain(self, wait: float = 0.0) -> list[Message]:
        return self._client().drain(wait)

    # --- its output and its end ------------------------------------------------------------------

    def output(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The last `chars` characters of its log."""
        if self.log is not None and not self.log.closed:
            self.log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log: the daemon was never started)"

    def stop(self, sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Signal it and wait for it to end; its exit status (subprocess.TimeoutExpired if it hangs)."""
        self.stopped_by_caller = True
        if self.proc is None or self.proc.poll() is not None:
            self._close_log()
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._close_log()

    def shutdown(self, sig=signal.SIGINT, timeout: float = STOP_TIMEOUT_S) -> tuple[int, bool]:
        """Stop it cleanly and, if it hangs past `timeout`, kill it: (exit status, whether it was killed)."""
        try:
            return self.stop(sig, timeout), False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(), True

    def kill9(self) -> None:
        self.stopped_by_caller = True
        self.proc.kill()
        self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()


def wait_for(condition, timeout: float = 60.0, what="condition", interval: float = 0.02):
    """Poll `condition()` every `interval` s until it is truthy (returned) or `timeout` passes.

    Then AssertionError naming `what` (a string, or a callable giving one: what was last seen). The
    condition is tried once more at the deadline, so a slow poll never fails a condition that holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))  # poll interval
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")
