"""Shared fixtures. Real parts where possible: a private JACK server for MIDI tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

JACKD = shutil.which("jackd")
# Names come from a small pool, not fresh random ones: JACK keeps a registry of at most 8
# servers and only reclaims the slot of a server that died uncleanly when a new server
# starts under the same name. A pool name in use by a live server is skipped.
JACK_POOL = [f"ddjack{i}" for i in range(6)]


def _die_with_parent() -> None:
    """Linux: jackd gets SIGTERM (and unregisters cleanly) if the test run is killed."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_jack_server(name: str | None = None, timeout: float = 10.0, realtime: bool = False):
    """Start `jackd --no-realtime -n NAME -d dummy -r 48000 -p 64`; return (name, Popen).

    Up means its server socket exists and it is still running after a short settle time.
    Its log goes to a temp file (`proc.log`): a pipe left unread would fill with xrun
    lines and stall the server.
    """
    errors = []
    for candidate in ([name] if name else JACK_POOL):
        log = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(
            [JACKD, "--realtime" if realtime else "--no-realtime", "-n", candidate, "-d", "dummy", "-r", "48000", "-p", "64"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        proc.log = log
        sock = Path("/dev/shm") / f"jack_{candidate}_{os.getuid()}_0"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not sock.exists():
            time.sleep(0.05)
        time.sleep(0.5)  # accepts clients just after; the dummy driver xruns while settling
        if proc.poll() is None and sock.exists():
            return candidate, proc
        stop_jack_server(proc)
        log.seek(0)
        errors.append(f"{candidate}: " + " / ".join(log.read().strip().splitlines()[-2:]))
    raise RuntimeError("jackd did not start: " + "; ".join(errors))


def stop_jack_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: jackd unregisters from JACK's server registry
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class JackServer(str):
    """The server's name (a str), plus its process and an xrun counter from its log."""

    proc: subprocess.Popen

    def xruns(self) -> int:
        self.proc.log.seek(0)
        return self.proc.log.read().count("XRun")


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server (dummy driver, 48 kHz, 64 frames) for the whole test session.

    Yields its name; JACK_DEFAULT_SERVER points at it for this process and every child.
    """
    if JACKD is None:
        pytest.skip("jackd is not installed (apt-get install jackd2); JACK MIDI tests need it")
    name, proc = start_jack_server()
    name = JackServer(name)
    name.proc = proc
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        yield name
    finally:
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        stop_jack_server(proc)


@pytest.fixture
def private_jack_server(monkeypatch):
    """A JACK server of the test's own, for tests that kill or restart it.

    Yields (name, restart) where restart() kills the server and returns a function that
    starts it again under the same name.
    """
    if JACKD is None:
        pytest.skip("jackd is not installed (apt-get install jackd2); JACK MIDI tests need it")
    name, proc = start_jack_server()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    state = {"proc": proc}

    def kill():
        stop_jack_server(state["proc"])

    def start_again():
        _, state["proc"] = start_jack_server(name)

    try:
        yield name, kill, start_again
    finally:
        stop_jack_server(state["proc"])


@pytest.fixture(scope="session")
def alsa_seq():
    if not Path("/dev/snd/seq").exists():
        pytest.skip("/dev/snd/seq is missing (no ALSA sequencer in this machine/container)")
    return True
