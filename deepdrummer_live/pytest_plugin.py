"""The pytest plugin: a real daemon for one test (contract v1.2, "For developers"; docs/testing.md).

Registered by the package (entry point group `pytest11`), so a test suite of one's own only writes

    def test_like(deepdrummer_daemon):
        loop_id = deepdrummer_daemon.wait("/dd/loop")[0]
        deepdrummer_daemon.send("/dd/like", loop_id)
        assert deepdrummer_daemon.wait("/dd/rated")[1] == "like"

Fixtures:

- `deepdrummer_daemon`: `deepdrummer-live run --headless --midi-backend none --audio none` on a free
  OSC port (the rating page off), a temporary state dir and a seed, ready (it answers /dd/status with a
  current loop, and its first /dd/loop reached the fixture's socket, untaken). It is a
  deepdrummer_live.testing.Daemon: `osc_port`, `state_dir`, `send(address, *args)`,
  `wait(address, timeout=5.0)`, `expect(...)`, `client` (a deepdrummer_live.client.OscClient subscribed
  from the daemon's first message on), `output()` (its log).
- `deepdrummer_daemon_factory(kit=None, args=(), jack=False, seed=1, audio="none", state_dir=None)`:
  starts more daemons, or daemons with other options, in one test.

Options: the marker `@pytest.mark.deepdrummer(kit=..., args=[...], jack=True, seed=...)` for
`deepdrummer_daemon`; `--deepdrummer-kit` / ini `deepdrummer_kit` and `--deepdrummer-args` / ini
`deepdrummer_args` (extra `run` flags) for every daemon; ini `deepdrummer_startup_timeout` [180 s].
jack=True gives the daemon a private JACK server (dummy driver) and real JACK MIDI ports
(`--midi-backend jack`); the daemon's `jack_server` is its name, and JACK_DEFAULT_SERVER points the
test process at it for the test. The test is skipped, naming the Debian package, where jackd is missing.

Each daemon is stopped after its test with SIGINT and killed if it hangs (both are reported as a
teardown error, as is a non-zero exit status); its log is attached to a failing test's report.
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import pytest

from deepdrummer_live.client import OscClient
from deepdrummer_live.testing import STARTUP_TIMEOUT_S, STOP_TIMEOUT_S, Daemon

NO_JACK = ("jackd/jack_lsp are not installed: a deepdrummer daemon with jack=True needs a JACK server "
           "(Debian/Ubuntu: apt-get install jackd2)")
LOG_REPORT_CHARS = 20_000
_DAEMONS = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("deepdrummer", "DeepDrummer Live daemon fixtures (deepdrummer_daemon)")
    group.addoption("--deepdrummer-kit", dest="deepdrummer_kit", default=None, metavar="NAME_OR_DIR",
                    help="the kit every test daemon runs with (`run --kit`); default: the built-in kit")
    group.addoption("--deepdrummer-args", dest="deepdrummer_args", default=None, metavar="FLAGS",
                    help="more `run` flags for every test daemon, as one shell-quoted string, "
                         "e.g. --deepdrummer-args='--rows 6 --tempo 90'")
    parser.addini("deepdrummer_kit", "the kit every test daemon runs with (`run --kit`)", default="")
    parser.addini("deepdrummer_args", "more `run` flags for every test daemon", type="args", default=[])
    parser.addini("deepdrummer_startup_timeout", "seconds a test daemon may take to become ready",
                  default=str(STARTUP_TIMEOUT_S))


def pytest_configure(config):
    config.addinivalue_line("markers", "deepdrummer(kit=None, args=(), jack=False, seed=1, audio='none'): "
                                       "options of the deepdrummer_daemon fixture's daemon")


def _resolve_kit(kit, base: Path) -> str:
    """A kit folder given relative to `base` as an absolute path (the daemon runs in a folder of its own);
    a kit name (`dd-digital`) as it is."""
    path = Path(kit)
    return str(base / path) if not path.is_absolute() and (base / path).is_dir() else str(kit)


def _config_kit(config) -> str | None:
    if config.getoption("deepdrummer_kit"):
        return _resolve_kit(config.getoption("deepdrummer_kit"), config.invocation_params.dir)
    if config.getini("deepdrummer_kit"):
        ini_dir = config.inipath.parent if config.inipath else config.rootpath
        return _resolve_kit(config.getini("deepdrummer_kit"), ini_dir)
    return None


def _config_args(config) -> list[str]:
    cli = config.getoption("deepdrummer_args")
    return [*config.getini("deepdrummer_args"), *(shlex.split(cli) if cli else [])]


def _startup_timeout(config) -> float:
    text = config.getini("deepdrummer_startup_timeout")
    try:
        return float(text)
    except ValueError:
        raise pytest.UsageError(f"deepdrummer_startup_timeout = {text!r} is not a number of seconds; "
                                f"write e.g. 180") from None


class _Factory:
    """Starts daemons for one test and stops every one of them after it."""

    def __init__(self, request, tmp_path_factory):
        self.request = request
        self.tmp_path_factory = tmp_path_factory
        self.started: list[Daemon] = []
        self.jack_servers: list = []  # private JACK servers, stopped after the daemons that use them
        self.env = pytest.MonkeyPatch()  # JACK_DEFAULT_SERVER of this process, for the test's own JACK clients
        request.node.stash.setdefault(_DAEMONS, [])

    def __call__(self, kit=None, args=(), jack: bool = False, seed: int | None = 1, audio: str = "none",
                 state_dir=None) -> Daemon:
        config = self.request.config
        if isinstance(args, str):
            pytest.fail(f"deepdrummer daemon args={args!r}: give a list of flags, e.g. {shlex.split(args)!r}",
                        pytrace=False)
        kit = _resolve_kit(kit, Path.cwd()) if kit is not None else _config_kit(config)
        env, midi, server = {}, "none", None
        if jack:
            from deepdrummer_live.player.jackd import JACK_LSP, JACKD, start_jack_server

            if JACKD is None or JACK_LSP is None:
                pytest.skip(NO_JACK)
            server = start_jack_server()
            self.jack_servers.append(server)
            env["JACK_DEFAULT_SERVER"] = str(server)
            # the test's own JACK clients (rtmidi ports, jack_lsp) reach the same server
            self.env.setenv("JACK_DEFAULT_SERVER", str(server))
            midi = "jack"
        # A folder of its own per daemon: its state dir, its log and its working folder (it writes nothing else).
        home = self.tmp_path_factory.mktemp("deepdrummer")
        client = OscClient(0)
        daemon = Daemon(state_dir or home / "state", *_config_args(config), *args, seed=seed, midi=midi,
                        audio=audio, kit=kit, env=env, cwd=home, log_path=home / "daemon.log", client=client)
        daemon.jack_server = server  # its name (a str) for JACK_DEFAULT_SERVER, or None
        self.started.append(daemon)
        self.request.node.stash[_DAEMONS].append(daemon)
        daemon.start(timeout=_startup_timeout(config))
        return daemon

    def stop_all(self) -> None:
        problems = []
        try:
            for daemon in reversed(self.started):
                try:
                    problem = self._stop(daemon)
                    if problem:
                        problems.append(problem)
                finally:
                    if daemon.client is not None:
                        daemon.client.close()
        finally:
            for server in self.jack_servers:
                server.stop()
            self.env.undo()
        if problems:
            pytest.fail("; ".join(problems) + " (its log is in this report)", pytrace=False)

    @staticmethod
    def _stop(daemon: Daemon) -> str | None:
        """SIGINT, then a kill if it hangs; what went wrong, or None."""
        if daemon.proc is None or (daemon.stopped_by_caller and not daemon.running()):
            return None  # never started, or stopped (or killed, to test a crash) by the test itself
        was_running = daemon.running()
        code, killed = daemon.shutdown(signal.SIGINT, STOP_TIMEOUT_S)
        if killed:
            return (f"the daemon on OSC port {daemon.osc_port} did not stop within {STOP_TIMEOUT_S:g} s of SIGINT "
                    f"and was killed")
        if code != 0:
            when = "on SIGINT" if was_running else "during the test"
            return f"the daemon on OSC port {daemon.osc_port} exited with {code} {when}"
        return None


@pytest.fixture
def deepdrummer_daemon_factory(request, tmp_path_factory):
    """Call it to start a daemon: factory(kit=None, args=(), jack=False, seed=1, audio="none", state_dir=None).

    Every daemon it started is stopped after the test (SIGINT; killed if it hangs)."""
    factory = _Factory(request, tmp_path_factory)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def deepdrummer_daemon(request, deepdrummer_daemon_factory) -> Daemon:
    """A real daemon for this test, ready, with a subscribed client; see the module's doc."""
    marker = request.node.get_closest_marker("deepdrummer")
    options = dict(marker.kwargs) if marker else {}
    unknown = sorted(set(options) - {"kit", "args", "jack", "seed", "audio"})
    if unknown:
        pytest.fail(f"@pytest.mark.deepdrummer({', '.join(unknown)}=...): not an option; use kit, args, jack, "
                    f"seed or audio", pytrace=False)
    return deepdrummer_daemon_factory(**options)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for daemon in item.stash.get(_DAEMONS, []):
            report.sections.append((f"deepdrummer daemon log (OSC port {daemon.osc_port}, pid {daemon.pid})",
                                    daemon.output(LOG_REPORT_CHARS)))
    return report
