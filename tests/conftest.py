"""Shared fixtures. Real parts where possible: a private JACK server for MIDI tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepdrummer_live.player.jackd import JACK_LSP, JACKD, start_jack_server

# The package's pytest plugin (the deepdrummer_daemon fixtures), also where the package is only on
# sys.path and its entry point is not installed; an installed entry point registers the same name.
pytest_plugins = ["deepdrummer_live.pytest_plugin"]

NO_JACK = "jackd/jack_lsp are not installed (apt-get install jackd2); JACK MIDI tests need them"


@pytest.fixture(scope="session")
def kit():
    """The default built-in kit (read-only for tests)."""
    from deepdrummer_live.sound.kit import load_kit

    return load_kit(None)


@pytest.fixture(scope="session")
def scorer(kit):
    """The lean critic's batched scorer on the default kit, on the CPU."""
    from deepdrummer_live.learn.critic import LEAN_CONFIG
    from deepdrummer_live.learn.search import Scorer

    return Scorer(kit, LEAN_CONFIG, "cpu")


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server (dummy driver, 48 kHz, 64 frames) for the whole test session.

    Yields it (a JackServer: its name, a str); JACK_DEFAULT_SERVER points at it for this process
    and every child.
    """
    if JACKD is None or JACK_LSP is None:
        pytest.skip(NO_JACK)
    server = start_jack_server()
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server
    try:
        yield server
    finally:
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        server.stop()


@pytest.fixture
def private_jack_server(monkeypatch):
    """A JACK server of the test's own, for tests that kill or restart it.

    Yields (name, kill, start_again): kill() stops the server, start_again() starts it under
    the same name.
    """
    if JACKD is None or JACK_LSP is None:
        pytest.skip(NO_JACK)
    state = {"server": start_jack_server()}
    name = str(state["server"])
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)

    def kill():
        state["server"].stop()

    def start_again():
        state["server"] = start_jack_server(name)

    try:
        yield name, kill, start_again
    finally:
        state["server"].stop()


PAPER_KIT = Path(__file__).resolve().parents[1].parent / "shared" / "external-kits" / "deepdrummer-paper"


@pytest.fixture(scope="session")
def paper_kit() -> Path:
    """The paper's kit: test data kept outside the repo (../shared/external-kits, see its README.md),
    which the suite needs (test_critics reads it too): a checkout without it fails, it never skips."""
    if not PAPER_KIT.is_dir():
        pytest.fail(f"the paper's external kit is not at {PAPER_KIT}: the tests need ../shared/external-kits "
                    f"beside the checkout (its README.md says what it holds)")
    return PAPER_KIT


@pytest.fixture(scope="session")
def alsa_seq():
    if not Path("/dev/snd/seq").exists():
        pytest.skip("/dev/snd/seq is missing (no ALSA sequencer in this machine/container)")
    return True
