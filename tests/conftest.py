"""Shared fixtures. Real parts where possible: a private JACK server for MIDI tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

JACKD = shutil.which("jackd")


def start_jack_server(name: str | None = None, timeout: float = 10.0):
    """Start `jackd --no-realtime -n NAME -d dummy -r 48000 -p 64`; return (name, Popen).

    Up means its server socket exists and a client can connect (checked with rtmidi).
    """
    name = name or f"ddtest{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [JACKD, "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "64"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"})
    sock = Path("/dev/shm") / f"jack_{name}_{os.getuid()}_0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-500:]
            raise RuntimeError(f"jackd exited with {proc.returncode}: {err}")
        if sock.exists() or Path(f"/tmp/jack_{name}_{os.getuid()}_0").exists():
            time.sleep(0.5)  # accepts clients just after; the dummy driver xruns while settling
            return name, proc
        time.sleep(0.05)
    stop_jack_server(proc)
    raise RuntimeError(f"jackd -n {name} did not come up within {timeout:g} s")


def stop_jack_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server (dummy driver, 48 kHz, 64 frames) for the whole test session.

    Yields its name; JACK_DEFAULT_SERVER points at it for this process and every child.
    """
    if JACKD is None:
        pytest.skip("jackd is not installed (apt-get install jackd2); JACK MIDI tests need it")
    name, proc = start_jack_server()
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
