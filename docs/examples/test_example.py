"""Integration tests of one's own against the real DeepDrummer Live daemon (docs/testing.md).

Copy this file into any folder, install the deepdrummer-live wheel and pytest, run `pytest`: the
package's pytest plugin gives each test a real daemon (`deepdrummer_daemon`), ready and subscribed,
stopped after the test. The controller test needs JACK (Debian: jackd2) and is skipped without it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from deepdrummer_live.client import DaemonError, Error, Rated, Status

# Timeouts are deadlines, not pauses: a wait returns as soon as its message is there. 30 s leaves room
# for a loaded CI machine; on a laptop every answer here takes milliseconds (a rating: one disk sync).
T = 30.0


def test_the_daemon_answers_a_ping(deepdrummer_daemon):
    deepdrummer_daemon.send("/dd/ping")
    assert deepdrummer_daemon.wait("/dd/pong", T) == ()


def test_a_like_is_acknowledged_and_a_new_loop_follows(deepdrummer_daemon):
    d = deepdrummer_daemon
    first = d.client.next_loop(timeout=T)  # the first /dd/loop, with its /dd/levels and /dd/shape, as a Loop
    assert (len(first.rows), first.n_steps, first.bars, first.meter) == (4, 16, 1, "4/4")  # the defaults
    d.send("/dd/like", first.loop_id)
    rated = d.expect(Rated, T, lambda r: r.loop_id == first.loop_id)  # sent once the rating is durable
    assert rated.liked and (rated.total_likes, rated.total_dislikes) == (1, 0)
    following = d.client.next_loop(after=first.loop_id, timeout=T)  # a rating makes a new loop current
    assert all(len(row.steps) == len(row.levels) == following.n_steps for row in following.rows)


def test_a_bad_value_changes_nothing_and_is_answered_with_an_error(deepdrummer_daemon):
    d = deepdrummer_daemon
    d.send("/dd/tempo", 1000.0)
    error = d.expect(Error, T)
    assert error.address == "/dd/tempo" and "1000" in error.message
    with pytest.raises(DaemonError, match="explore"):  # request(): send, then the answer or its error
        d.client.request("/dd/mode", "jazz", timeout=T)


# --- a Pd patch: Pd sends every number as a float ------------------------------------------------


def test_numbers_sent_as_floats_are_taken(deepdrummer_daemon):
    """What a Pd (or Max) patch sends: `/dd/fotf 1.0`, `/dd/like 7.0`; the contract accepts an integral float
    wherever it says `i`."""
    d = deepdrummer_daemon
    d.client.request("/dd/fotf", 1, types="f", timeout=T)  # no /dd/error before the ping that request() sends after it
    loop_id = d.wait("/dd/loop")[0]
    d.send("/dd/dislike", float(loop_id))
    assert d.expect(Rated, T).loop_id == loop_id


# --- a DAW script: the command line a DAW macro or a stream deck runs ----------------------------


def send_command() -> list[str]:
    """`deepdrummer-live send`, the console script where it is on PATH, else the same through this Python."""
    script = shutil.which("deepdrummer-live")
    return [script] if script else [sys.executable, "-m", "deepdrummer_live.cli.main"]


def test_a_daw_macro_rates_with_the_send_command(deepdrummer_daemon):
    d = deepdrummer_daemon
    loop_id = d.wait("/dd/loop")[0]
    out = subprocess.run([*send_command(), "send", "--port", str(d.osc_port), "--timeout", "30", "/dd/like"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["/dd/rated", str(loop_id), "like"]  # printed as `address arg arg...`
    assert d.expect(Rated, T).loop_id == loop_id  # subscribers see it too
    d.send("/dd/status")
    assert d.expect(Status, T).total_likes == 1


# --- a controller mapping: real MIDI into the daemon's JACK input port ---------------------------


@pytest.mark.deepdrummer(jack=True, args=["--midi-in", "pads", "--controller", "generic"])
def test_a_pad_of_the_generic_mapping_likes_the_current_loop(deepdrummer_daemon):
    import rtmidi  # python-rtmidi, a dependency of the package

    d = deepdrummer_daemon
    loop_id = d.wait("/dd/loop")[0]
    pads = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "example-pads")  # JACK_DEFAULT_SERVER: the daemon's server
    deadline = time.monotonic() + 10
    while not (ports := [i for i, name in enumerate(pads.get_ports()) if "pads" in name]):
        assert time.monotonic() < deadline, f"no JACK MIDI input named pads: {pads.get_ports()}"
        time.sleep(0.05)  # poll interval while the daemon's port appears
    pads.open_port(ports[0])
    try:
        d.jack_server.wait_connected("example-pads", "pads")  # JACK itself reports the connection
        pads.send_message([0x90, 36, 100])  # note 36 on: "like" in the generic mapping
        pads.send_message([0x80, 36, 0])
        rated = d.expect(Rated, T)
        assert rated.liked and rated.loop_id == loop_id
    finally:
        pads.close_port()
