"""A private JACK server on the dummy driver (no sound card): for the tests and the benchmarks.

`start_jack_server()` runs `jackd -n NAME -d dummy -r 48000 -p 64` (or another period), realtime where
this process may use SCHED_FIFO, and returns a `JackServer`: its name (a str, for JACK_DEFAULT_SERVER), its
process, an xrun count and JACK's own view of port connections.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

JACKD = shutil.which("jackd")
JACK_LSP = shutil.which("jack_lsp")
SAMPLE_RATE, PERIOD_FRAMES = 48000, 64
# Names come from a small pool, not fresh random ones: JACK keeps a registry of at most 8
# servers and only reclaims the slot of a server that died uncleanly when a new server
# starts under the same name. A pool name in use by a live server is skipped.
JACK_POOL = [f"ddjack{i}" for i in range(6)]


def _die_with_parent() -> None:
    """Linux: jackd gets SIGTERM (and unregisters cleanly) if the test run is killed."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# jackd --realtime keeps running without SCHED_FIFO when the process may not have it; it says so.
RT_REFUSED = ("Cannot use real-time scheduling", "AcquireSelfRealTime error", "AcquireRealTime error")


def jack_lsp(server: str, *flags: str, timeout: float = 10.0) -> str | None:
    """`jack_lsp FLAGS` against `server` (never spawning one); its stdout, None when it cannot connect."""
    env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
    try:
        proc = subprocess.run([JACK_LSP or "jack_lsp", *flags], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _log_text(proc) -> str:
    proc.log.seek(0)
    return proc.log.read()


def _start_one(candidate: str, realtime: bool, timeout: float, period: int = PERIOD_FRAMES):
    """jackd on the dummy driver; (proc, None) once it accepts clients, else (None, why)."""
    if jack_lsp(candidate, timeout=2.0) is not None:
        return None, "in use by another server"  # another test run's: never mistake it for ours
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [JACKD, "--realtime" if realtime else "--no-realtime", "-n", candidate, "-d", "dummy", "-r",
         str(SAMPLE_RATE), "-p", str(period)], stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    proc.log = log
    deadline = time.monotonic() + timeout
    # up = a client can connect (jack_lsp answers), not merely a socket file
    while proc.poll() is None and time.monotonic() < deadline:
        if jack_lsp(candidate, timeout=max(0.5, deadline - time.monotonic())) is not None and proc.poll() is None:
            if realtime and any(text in _log_text(proc) for text in RT_REFUSED):
                stop_jack_server(proc)
                return None, "realtime refused"
            return proc, None
        time.sleep(0.05)  # poll interval while jackd starts
    stop_jack_server(proc)
    return None, " / ".join(_log_text(proc).strip().splitlines()[-2:]) or "no output"


def start_jack_server(name: str | None = None, timeout: float = 10.0, realtime: bool | None = None,
                      period: int = PERIOD_FRAMES) -> JackServer:
    """Start `jackd -n NAME -d dummy -r 48000 -p PERIOD` (64 frames unless asked) under `name` or a free pool name.

    realtime None: --realtime (SCHED_FIFO, so a busy machine does not make it miss cycles) where
    this process may use it, else --no-realtime. Its log goes to a temp file (`proc.log`): a pipe
    left unread would fill with xrun lines and stall the server.
    """
    errors = []
    modes = [True, False] if realtime is None else [realtime]
    for candidate in ([name] if name else JACK_POOL):
        for mode in modes:
            proc, why = _start_one(candidate, mode, timeout, period)
            if proc is not None:
                proc.realtime = mode
                proc.period = period
                return JackServer(candidate, proc)
            errors.append(f"{candidate} ({'realtime' if mode else 'no-realtime'}): {why}")
            if why != "realtime refused":
                break  # the name is taken or jackd is broken: the next pool name, not the next mode
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

    def __new__(cls, name: str, proc: subprocess.Popen):
        server = super().__new__(cls, name)
        server.proc = proc
        return server

    def stop(self) -> None:
        stop_jack_server(self.proc)

    @property
    def realtime(self) -> bool:
        return self.proc.realtime

    @property
    def period(self) -> int:
        """Frames per JACK cycle."""
        return self.proc.period

    def xruns(self) -> int:
        return _log_text(self.proc).count("XRun")

    def xrun_lines(self, start: int = 0) -> list[str]:
        """jackd's log lines about missed cycles from the `start`-th on (they say which client was late)."""
        lines = [line for line in _log_text(self.proc).splitlines() if "XRun" in line or "xrun" in line]
        return lines[start:]

    def connected(self, port_a: str, port_b: str) -> bool:
        """Ports whose full names contain port_a and port_b are connected (JACK's own view)."""
        out = jack_lsp(self, "-c") or ""
        owner = None
        for line in out.splitlines():
            if not line.startswith((" ", "\t")):
                owner = line
            elif owner is not None and port_a in owner and port_b in line.strip():
                return True
        return False

    def wait_connected(self, port_a: str, port_b: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.connected(port_a, port_b):
            if time.monotonic() > deadline:
                raise TimeoutError(f"JACK ports {port_a!r} and {port_b!r} not connected within {timeout} s: "
                                     f"{jack_lsp(self, '-c')}")
            time.sleep(0.05)  # poll interval




class FrameRecorder:
    """A JACK client of its own process (player/jackwriter.py with only an input port) that records every
    MIDI message heard with its exact frame (JACK's last_frame_time + offset), so timing is measured in
    JACK's frames by a client whose callback waits on nothing of the measuring process.

    Connect any number of output ports to `port`; `messages()` is what came so far, (frame, bytes).
    """

    def __init__(self, server: str, name: str = "dd-recorder", timeout: float = 20.0):
        import json
        import select
        import threading

        from deepdrummer_live.player.jackwriter import READ_CHUNK, RECORD, signed32

        self.server, self.name, self.port = server, name, f"{name}:input"
        events_r, events_w = os.pipe()
        input_r, input_w = os.pipe()
        env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "deepdrummer_live.player.jackwriter", str(events_r),
                                      str(input_w), "", "input", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, pass_fds=(events_r, input_w), preexec_fn=_die_with_parent)
        os.close(events_r)
        os.close(input_w)
        self._events_w = events_w
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = json.loads(self.proc.stdout.readline() or "{}") if ready else {}
        if "rate" not in line:
            self.stop()
            raise RuntimeError(f"the JACK recorder did not start: {line or 'no answer in time'}")
        self._msgs: list[tuple[int, bytes]] = []
        self._cond = threading.Condition()

        def read() -> None:
            last = None
            while chunk := os.read(input_r, READ_CHUNK):
                got = []
                for frame, size, data in RECORD.iter_unpack(chunk):
                    last = frame if last is None else last + signed32(frame - last)  # JACK's 32-bit counter, unwrapped
                    got.append((last, data[:size]))
                with self._cond:
                    self._msgs.extend(got)
                    self._cond.notify_all()
            os.close(input_r)

        self._reader = threading.Thread(target=read, name="dd-recorder", daemon=True)
        self._reader.start()

    def messages(self) -> list[tuple[int, bytes]]:
        with self._cond:
            return list(self._msgs)

    def wait_for(self, pred, timeout: float = 15.0) -> list[tuple[int, bytes]]:
        """Every message so far, once `pred(messages)` accepts them; TimeoutError with the tail otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self._msgs):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"not heard within {timeout} s; last: {self._msgs[-8:]}")
                self._cond.wait(left)
            return list(self._msgs)

    def stop(self) -> None:
        if self._events_w is not None:
            os.close(self._events_w)
            self._events_w = None
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the recorder's signal to close its client and exit
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class AudioOnsets:
    """A JACK audio input of this process: the frame of the first sample over `threshold` after 100 ms without
    one (a click per bar). Python in this process: fine at long periods or with little else running here."""

    def __init__(self, source: str, threshold: float = 0.25):
        import jack
        import numpy as np

        self._np, self.threshold = np, threshold
        self.client = jack.Client("dd-onsets", no_start_server=True)
        self.port = self.client.inports.register("in")
        self.onsets: list[int] = []
        self._quiet_until = -1
        self.client.set_process_callback(self._process)
        self.client.activate()
        deadline = time.monotonic() + 10
        while not (ports := self.client.get_ports(source, is_audio=True, is_output=True)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no JACK audio output like {source!r}")
            time.sleep(0.05)  # poll interval while pyo opens its ports
        self.client.connect(ports[0], self.port)

    def _process(self, nframes: int) -> None:
        frame0 = self.client.last_frame_time
        np = self._np
        loud = np.flatnonzero(np.abs(self.port.get_array()) > self.threshold)
        if loud.size and frame0 + loud[-1] > self._quiet_until:
            first = frame0 + int(loud[np.searchsorted(frame0 + loud, self._quiet_until, side="right")])
            self.onsets.append(first)
            self._quiet_until = first + SAMPLE_RATE // 10  # one click per bar: 100 ms of deafness after it

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()
