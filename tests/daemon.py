"""Test helpers: the real daemon as a subprocess, and a real UDP OSC client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "deepdrummer_live.cli.main"]
EXTERNAL_KIT = REPO.parent / "shared" / "external-kits" / "deepdrummer-paper"


def free_udp_port() -> int:
    return _free_port(socket.SOCK_DGRAM)


def free_tcp_port() -> int:
    return _free_port(socket.SOCK_STREAM)


def _free_port(kind: int) -> int:
    """A port the system just gave out (the test binds it a moment later; nothing else here takes ports)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(address: str, *args, types: str | None = None) -> bytes:
    b = OscMessageBuilder(address)
    for i, a in enumerate(args):
        b.add_arg(a, types[i] if types else None)
    return b.build().dgram


class OscClient:
    """A UDP socket that sends to the daemon and collects what comes back."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.backlog: list[tuple[str, list]] = []

    def send(self, address: str, *args, types: str | None = None) -> None:
        self.sock.sendto(build(address, *args, types=types), self.target)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def recv(self, timeout: float = 10.0) -> tuple[str, list]:
        if self.backlog:
            return self.backlog.pop(0)
        self.sock.settimeout(timeout)
        msg = OscMessage(self.sock.recvfrom(65536)[0])
        return msg.address, list(msg.params)

    def expect(self, address: str, timeout: float = 10.0) -> list:
        """The next message with `address`; others are kept for later `expect`s."""
        deadline = time.monotonic() + timeout
        kept = []
        try:
            for i, (addr, args) in enumerate(self.backlog):
                if addr == address:
                    del self.backlog[i]
                    return args
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {address} within {timeout} s (got {kept + self.backlog})")
                self.sock.settimeout(left)
                try:
                    msg = OscMessage(self.sock.recvfrom(65536)[0])
                except TimeoutError:
                    continue
                if msg.address == address:
                    return list(msg.params)
                kept.append((msg.address, list(msg.params)))
        finally:
            self.backlog.extend(kept)

    def received(self) -> list[tuple[str, list]]:
        """What has arrived so far (kept by `expect` or waiting in the socket), without waiting.

        A negative check ("no /dd/rated came") is only sound after a barrier: a reply that the
        daemon sends after anything the checked message could have caused (e.g. /dd/ping)."""
        return self.drain(0.0)

    def drain(self, wait: float = 0.2) -> list[tuple[str, list]]:
        """Everything kept and arriving until nothing more comes for `wait` seconds (0: no waiting)."""
        out = list(self.backlog)
        self.backlog.clear()
        self.sock.settimeout(wait)  # 0.0: non-blocking, an empty socket raises BlockingIOError
        try:
            while True:
                msg = OscMessage(self.sock.recvfrom(65536)[0])
                out.append((msg.address, list(msg.params)))
        except (TimeoutError, BlockingIOError):
            return out
        finally:
            self.sock.settimeout(None)

    def close(self) -> None:
        self.sock.close()


def wait_train_steps(client: OscClient, above: int, timeout: float = 300.0) -> int:
    """/dd/status's train_steps once it is above `above`, polled with a deadline (the critic first
    learns to hear the kit, then trains on ratings: minutes on a busy CPU)."""
    deadline = time.monotonic() + timeout
    while True:
        client.send("/dd/status")
        steps = client.expect("/dd/status")[5]
        if steps > above:
            return steps
        assert time.monotonic() < deadline, f"train_steps still {steps} after {timeout} s (needed > {above})"
        time.sleep(0.2)  # poll interval


def start_with_client(state_dir: Path, *extra: str, **kw) -> tuple[Daemon, OscClient]:
    """A started daemon with a subscribed client (--notify), its startup messages drained."""
    client = OscClient(0)
    d = Daemon(state_dir, "--notify", f"127.0.0.1:{client.port}", *extra, **kw)
    client.target = ("127.0.0.1", d.port)
    try:
        d.start()
    except BaseException:
        client.close()
        raise
    client.drain()
    return d, client


class Daemon:
    """`deepdrummer-live run --headless` on a free port and a state dir; stop() sends SIGTERM."""

    def __init__(self, state_dir: Path, *extra: str, port: int | None = None, seed: int = 1,
                 midi: str = "none", audio: str = "none", env: dict | None = None):
        self.port = port or free_udp_port()
        self.state_dir = Path(state_dir)
        # The rating page stays off unless a test asks for it: daemons in parallel must not race for 9080.
        web = () if "--web-port" in extra else ("--web-port", "0")
        self.args = [*CLI, "run", "--headless", "--state-dir", str(state_dir), "--osc-port", str(self.port),
                     "--midi-backend", midi, "--audio", audio, "--seed", str(seed), *web, *extra]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> Daemon:
        self.log = open(self.state_dir.parent / f"{self.state_dir.name}-daemon.log", "ab")
        self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:  # a deadline: a busy CI machine needs minutes
        probe = OscClient(self.port)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.output()}")
                probe.send("/dd/status")
                try:
                    addr, args = probe.recv(timeout=0.5)
                except (TimeoutError, ConnectionRefusedError, OSError):
                    continue
                if addr == "/dd/status" and args[2] >= 0:  # a first loop is current
                    return
                time.sleep(0.1)
            raise TimeoutError(f"daemon not ready in {timeout} s: {self.output()}")
        finally:
            probe.close()

    def output(self) -> str:
        if not self.log.closed:  # stop() closes it
            self.log.flush()
        return (self.state_dir.parent / f"{self.state_dir.name}-daemon.log").read_text(errors="replace")[-3000:]

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    """Poll `condition()` until it is truthy (returned) or `timeout` passes (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
