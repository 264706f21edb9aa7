"""deepdrummer_live.client against bare UDP sockets (a fake daemon), and the pytest plugin's fixtures
against the real daemon: started and stopped per test, nothing left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from deepdrummer_live.client import (
    DaemonError,
    Levels,
    Loop,
    Message,
    NoReply,
    OscClient,
    ProtocolError,
    Rated,
    Shape,
    Status,
    decode,
    encode,
    view,
)
from deepdrummer_live.testing import port_is_free, wait_for

from daemon import REPO

pytest_plugins = ["pytester"]

LOOP_ARGS = (7, 0.5, 120.0, 16, "kick_01", 36, "x...x...x...x...", "snare_02", 38, "....x.......x...")


@pytest.fixture
def fake():
    """A UDP socket standing for the daemon, and a client aimed at it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.settimeout(10)
        with OscClient(daemon.getsockname()[1]) as client:
            yield daemon, client


def to_client(daemon: socket.socket, client: OscClient, address: str, *args) -> None:
    daemon.sendto(encode(address, *args), ("127.0.0.1", client.local_port))


def test_client_module_imports_no_torch():
    """What a DAW macro or an outside test suite imports: torch (seconds to import) and numpy stay out."""
    code = ("import sys, deepdrummer_live.client, deepdrummer_live.testing, deepdrummer_live.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'librosa')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_wait_keeps_the_other_messages_in_order(fake):
    daemon, client = fake
    for i in range(3):
        to_client(daemon, client, "/dd/levels", i, "9...")
    to_client(daemon, client, "/dd/pong")
    assert client.wait("/dd/pong", 5) == ()
    assert client.wait("/dd/levels", 5, where=lambda a: a[0] == 1) == (1, "9...")
    assert [m.args[0] for m in client.backlog] == [0, 2]
    assert client.wait("/dd/levels", 0) == (0, "9...")
    assert client.wait("/dd/nothing", 0.05) is None
    assert client.drain() == [("/dd/levels", (2, "9..."))]


def test_a_look_leaves_the_message(fake):
    daemon, client = fake
    to_client(daemon, client, "/dd/loop", *LOOP_ARGS)
    assert client.wait("/dd/loop", 5, take=False)[0] == 7
    assert client.wait("/dd/loop", 0)[0] == 7
    assert client.wait("/dd/loop", 0) is None


def test_expect_names_what_came_instead(fake):
    daemon, client = fake
    to_client(daemon, client, "/dd/error", "tempo 1000 is out of range 20-300", "/dd/tempo")
    with pytest.raises(NoReply, match="/dd/rated within 0.2 s.*tempo 1000") as info:
        client.expect("/dd/rated", 0.2)
    assert isinstance(info.value, TimeoutError)


def test_request_raises_the_daemons_error(fake):
    daemon, client = fake
    from threading import Thread

    def answer():
        data, sender = daemon.recvfrom(65536)
        assert decode(data) == [("/dd/tempo", (1000,))]
        daemon.sendto(encode("/dd/error", "tempo 1000 is out of range 20-300", "/dd/tempo"), sender)

    t = Thread(target=answer)
    t.start()
    with pytest.raises(DaemonError, match="1000") as info:
        client.request("/dd/tempo", 1000, reply="/dd/status", timeout=10)
    t.join()
    assert info.value.error.address == "/dd/tempo"
    assert list(client.errors)[-1].message.startswith("tempo 1000")


def test_typed_views_and_next_loop(fake):
    daemon, client = fake
    to_client(daemon, client, "/dd/loop", *LOOP_ARGS)
    to_client(daemon, client, "/dd/levels", 7, "9...5...9...5...", "....7.......7...")
    to_client(daemon, client, "/dd/shape", 7, 16, 1, "4/4")
    loop = client.next_loop(after=6, shape=True)
    assert (loop.loop_id, loop.n_steps, loop.samples, loop.notes) == (7, 16, ["kick_01", "snare_02"], [36, 38])
    assert loop.rows[0].levels == "9...5...9...5..." and loop.rows[1].hits == [4, 12]
    assert (loop.steps_per_bar, loop.bars, loop.meter) == (16, 1, "4/4")
    to_client(daemon, client, "/dd/loop", 8, *LOOP_ARGS[1:])
    to_client(daemon, client, "/dd/levels", 8, "9...5...9...5...", "....7.......7...")
    assert client.next_loop(after=7, shape=False).meter is None  # a v1.1 daemon sends no /dd/shape
    assert view(Message("/dd/rated", (7, "like", 3, 1))) == Rated(7, "like", 3, 1)
    assert Rated(7, "like", 3, 1).liked
    assert Status.from_args((1, 2, 7, "explore", "cpu", 0)).current_loop_id == 7
    assert Shape.from_args((7, 12, 2, "3/4")).steps_per_bar == 12
    with pytest.raises(ProtocolError, match="3 per row"):
        Loop.from_args(LOOP_ARGS[:-1])
    with pytest.raises(ProtocolError, match="does not fit"):
        Loop.from_args(LOOP_ARGS).with_levels(Levels(8, ("9", "9")))


def test_types_and_bools(fake):
    daemon, client = fake
    client.send("/dd/x", 1, 2.5, "s", types="fds")
    assert decode(daemon.recv(65536)) == [("/dd/x", (1.0, 2.5, "s"))]
    with pytest.raises(Exception, match="bool"):
        client.send("/dd/fotf", True)


def test_datagrams_that_are_not_osc_are_skipped(fake):
    daemon, client = fake
    daemon.sendto(b"\x00garbage", ("127.0.0.1", client.local_port))
    to_client(daemon, client, "/dd/pong")
    assert client.wait("/dd/pong", 5) == ()
    assert client.not_osc == 1


# --- the pytest plugin, against the real daemon ----------------------------------------------------


def test_the_fixture_gives_a_ready_subscribed_daemon(deepdrummer_daemon):
    d = deepdrummer_daemon
    loop = d.wait("/dd/loop")  # the first loop reached the fixture's socket and is still there
    assert loop is not None and loop[0] >= 0
    d.send("/dd/like", loop[0])
    rated = d.expect(Rated, where=lambda r: r.loop_id == loop[0])
    assert rated.liked and rated.total_likes == 1
    assert (d.state_dir / "state.sqlite").is_file()
    d.send("/dd/ping")
    assert d.wait("/dd/pong") == ()


PLUGIN_TESTS = """
import json, os

def record(d):
    with open(os.environ["DD_RECORD"], "a") as f:
        f.write(json.dumps({"pid": d.pid, "port": d.osc_port}) + "\\n")

def test_one(deepdrummer_daemon):
    record(deepdrummer_daemon)
    deepdrummer_daemon.send("/dd/status")
    assert deepdrummer_daemon.wait("/dd/status", 60)[2] >= 0  # deadlines for a loaded machine, not waits

def test_two(deepdrummer_daemon):
    record(deepdrummer_daemon)
    deepdrummer_daemon.send("/dd/tempo", 1000)
    assert deepdrummer_daemon.wait("/dd/error", 60)[1] == "/dd/tempo"
    assert False, "fails on purpose: its report carries the daemon's log"
"""


def test_the_fixture_starts_and_stops_a_daemon_per_test_and_leaks_nothing(pytester, tmp_path, monkeypatch):
    """Two tests in a suite of their own (a subprocess, as a developer runs it): two daemons, each gone
    after its test with its port free again, and the failing test's report carries its daemon's log."""
    import json

    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("DD_RECORD", str(record))
    # this checkout's package, not another copy installed in the environment
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    pytester.makepyfile(test_dd=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "deepdrummer_live.pytest_plugin", "-p", "no:cacheprovider",
                                           timeout=600)
    assert result.parseoutcomes() == {"passed": 1, "failed": 1}, "\n".join(result.outlines[-60:])
    result.stdout.fnmatch_lines(["*deepdrummer daemon log (OSC port *, pid *)*", "*OSC on 127.0.0.1:*"])
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(runs) == 2 and runs[0]["pid"] != runs[1]["pid"]
    for run in runs:
        assert not os.path.exists(f"/proc/{run['pid']}"), f"daemon {run['pid']} still running"
        assert wait_for(lambda port=run["port"]: port_is_free(port), 10, f"OSC port {run['port']} free")


@pytest.mark.deepdrummer(kit="dd-digital", args=["--tempo", "90"], seed=5)
def test_the_marker_sets_kit_flags_and_seed(deepdrummer_daemon):
    d = deepdrummer_daemon
    loop = d.client.next_loop()
    assert loop.bpm == 90.0
    assert "kit dd-digital" in d.output()  # the run log names the kit it loaded
    assert d.args[d.args.index("--seed") + 1] == "5"


def test_jack_without_jackd_skips_naming_the_debian_package(deepdrummer_daemon_factory, monkeypatch):
    import deepdrummer_live.player.jackd as jackd

    monkeypatch.setattr(jackd, "JACKD", None)
    with pytest.raises(pytest.skip.Exception, match="apt-get install jackd2"):
        deepdrummer_daemon_factory(jack=True)


def test_a_daemon_that_ignores_sigint_is_killed(tmp_path):
    """What the fixture's teardown does with a hung daemon (and reports as an error): SIGINT, then kill."""
    from deepdrummer_live.testing import Daemon

    hung = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "print('ignoring SIGINT', flush=True); time.sleep(120)")
    d = Daemon(tmp_path / "state", command=[sys.executable, "-c", hung]).start(wait=False)
    wait_for(lambda: "ignoring SIGINT" in d.output(), 30, "the handler in place")
    code, killed = d.shutdown(timeout=1)
    assert killed and code != 0 and not d.running()


def test_the_factory_resumes_a_state_dir_after_a_crash(deepdrummer_daemon_factory):
    """Two daemons in one test; the first killed by the test itself (no teardown error for that)."""
    first = deepdrummer_daemon_factory()
    loop_id = first.wait("/dd/loop")[0]
    first.send("/dd/like", loop_id)
    assert first.expect(Rated, timeout=30).total_likes == 1
    first.kill9()  # an acknowledged like survives kill -9
    second = deepdrummer_daemon_factory(state_dir=first.state_dir)
    assert second.wait("/dd/loop")[0] > loop_id  # ids keep increasing across restarts
    second.send("/dd/status")
    assert second.expect(Status).total_likes == 1
