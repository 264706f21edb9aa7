"""The main process's side of the player: `PlayerHandle` spawns the player process and talks to it,
commands down one pipe, events up another (messages: player/protocol.py)."""

from __future__ import annotations

import multiprocessing as mp
import sys
import threading
import time
from collections.abc import Callable

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player import protocol as msg
from deepdrummer_live.player.process import player_main
from deepdrummer_live.player.protocol import PlayerConfig

START_TIMEOUT_S = 30.0
_main_lock = threading.Lock()


class _hidden_main:
    """Keep "spawn" from re-running the parent's __main__ in the child.

    The child's entry point lives in player/process.py, so it never needs __main__; re-running it
    would import torch (seconds, hundreds of MB) or, for a script without a main guard,
    start a second player.
    """

    def __enter__(self):
        _main_lock.acquire()
        self.main = sys.modules.get("__main__")
        self.saved = {k: getattr(self.main, k) for k in ("__file__", "__spec__")
                      if self.main is not None and hasattr(self.main, k)}
        for k in self.saved:
            if k == "__spec__":
                self.main.__spec__ = None
            else:
                delattr(self.main, k)
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.main, k, v)
        _main_lock.release()
        return False


class PlayerHandle:
    """Starts and talks to the player process. Call `close()` explicitly."""

    def __init__(self, config: PlayerConfig, on_event: Callable[[msg.Event], None]):
        self.config = config
        self.on_event = on_event
        self.ready: msg.Ready | None = None
        self._proc = None
        self._cmd = None
        self._evt = None
        self._reader: threading.Thread | None = None
        self._closing = False
        self._send_lock = threading.Lock()

    def start(self, timeout: float = START_TIMEOUT_S) -> msg.Ready:
        """Spawn the player; return its `ready` event or raise UsageError with its message."""
        self.config.validate()
        ctx = mp.get_context("spawn")
        cmd_r, cmd_w = ctx.Pipe(duplex=False)
        evt_r, evt_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=player_main, args=(self.config, cmd_r, evt_w),
                                 name="deepdrummer-player", daemon=True)
        with _hidden_main():
            self._proc.start()
        cmd_r.close()  # only the child holds these ends, so EOF means the other side died
        evt_w.close()
        self._cmd, self._evt = cmd_w, evt_r
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not evt_r.poll(remaining):
                self.close()
                raise UsageError(f"the player process did not start within {timeout:g} s; "
                                 f"check the MIDI/audio system or use --midi-backend none --audio none")
            try:
                event = evt_r.recv()
            except EOFError:
                code = self._proc.exitcode
                self.close()
                raise UsageError(f"the player process exited during startup (exit code {code}); "
                                 f"run with --midi-backend none --audio none to isolate the cause") from None
            if event.get("type") == "fatal":
                self.close()
                raise UsageError(event["message"])
            if event.get("type") == "ready":
                self.ready = event
                break
            self.on_event(event)  # e.g. "running without audio" before ready
        self._reader = threading.Thread(target=self._read_events, name="dd-player-reader",
                                        daemon=True)
        self._reader.start()
        return event

    def _read_events(self) -> None:
        while True:
            try:
                event = self._evt.recv()
            except (EOFError, OSError):
                if not self._closing:
                    code = self._proc.exitcode if self._proc else None
                    self.on_event(msg.error(f"player process ended unexpectedly (exit code {code})", "/dd/midi"))
                return
            self.on_event(event)

    def _send(self, cmd: msg.Command) -> None:
        if self._cmd is None:
            raise RuntimeError("player is not running; call start() first")
        with self._send_lock:
            self._cmd.send(cmd)

    def set_loop(self, loop_id: int, rows: list[msg.Row], audio=None, at_bar: bool = True, *,
                 swing: float | None = None, steps_per_bar: int = 16, switch_at: str = "phrase") -> None:
        """Play `rows` ({note, steps, levels}, steps over every bar) from the playing loop's phrase end (or its
        next bar line: `switch_at`), or now; `swing` None keeps it."""
        self._send(msg.set_loop(loop_id, rows, audio, at_bar, swing=swing, steps_per_bar=steps_per_bar,
                                switch_at=switch_at))

    def play(self) -> None:
        self._send(msg.play())

    def stop(self) -> None:
        self._send(msg.stop())

    def set_tempo(self, tempo: float) -> None:
        self._send(msg.tempo(tempo))

    @property
    def can_learn(self) -> bool:
        """MIDI learn needs the input port (and the controller map) of the player."""
        return bool(self.ready and self.ready.get("midi_in"))

    def learn(self, on: bool = True) -> None:
        """The next note/CC press comes back as a `learn_midi` event instead of being mapped."""
        self._send(msg.learn(on))

    def bind(self, binding) -> None:
        """Add a controller binding (a `controller.Binding`) to the player's mapping."""
        self._send(msg.bind(binding.kind, binding.number, binding.channel, binding.action, binding.value))

    def request_stats(self) -> None:
        """The player answers with a `stats` event (send-side clock lateness)."""
        self._send(msg.stats())

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Shutdown (note-offs flushed by the child), join, terminate if stuck."""
        self._closing = True
        if self._cmd is not None:
            try:
                with self._send_lock:
                    self._cmd.send(msg.shutdown())
            except (OSError, BrokenPipeError):
                pass  # the child is already gone; joining below reaps it
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(2.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(2.0)
        if self._reader is not None:
            self._reader.join(2.0)
            self._reader = None
        for conn in (self._cmd, self._evt):
            if conn is not None:
                conn.close()
        self._cmd = self._evt = None
        self._proc = None
