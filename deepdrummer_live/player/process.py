"""The player process's start-up: what it opens (clock source, MIDI ports, audio), its priority,
and the threads around the engine (commands in, events out). `PlayerHandle` (player/handle.py)
spawns `player_main`; the engine itself is player/sequencer.py."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player import midi
from deepdrummer_live.player import protocol as msg
from deepdrummer_live.player.clock import ClockSource, InternalClock, LinkClock, MidiClockFollower
from deepdrummer_live.player.protocol import PlayerConfig
from deepdrummer_live.player.sequencer import Sequencer

RT_PRIORITY = 3  # below JACK's realtime threads: jackd -P 10 (its default) runs its clients' process threads at 5
HELPER_RT_PRIORITY = 1  # the pipe threads: above normal threads (torch), below the engine and JACK


def make_clock(config: PlayerConfig, now: float) -> ClockSource:
    lead = max(0.0, -config.midi_offset_ms / 1000.0)
    if config.clock == "internal":
        return InternalClock(config.tempo, now, lead)
    if config.clock == "midi":
        return MidiClockFollower(lead, fallback_tempo=config.tempo)
    try:
        import asyncio

        import aalink

        # aalink wants an event loop for its callbacks; we only poll, so it never runs
        link = aalink.Link(config.tempo, asyncio.new_event_loop())
    except Exception as exc:  # ImportError, or the native library failing to start
        raise UsageError(f"--clock link: Ableton Link is unavailable ({exc}); install aalink "
                         f"(pip install aalink) or use --clock internal/midi") from exc
    return LinkClock(link, config.tempo, now, lead)


def open_ports(config: PlayerConfig, on_input, continue_from: float | None = None):
    """The MIDI ports, opened: JACK's frame-accurate writer for --midi-backend jack where JACK-Client
    loads (player/jackmidi.py), else python-rtmidi's ports. UsageError with the fix when they cannot open.
    `continue_from`: the engine's time when reopening, so JACK-timed ports carry on from it."""
    out_name = config.midi_out if config.midi_backend != "none" else None
    in_name = config.midi_in if config.midi_backend != "none" else None
    if config.midi_backend == "jack" and config.jack_frames:
        from deepdrummer_live.player import jackmidi

        if jackmidi.unavailable() is None:
            ports = jackmidi.JackMidiPorts(out_name, in_name, on_input, continue_from=continue_from)
            ports.open()
            return ports
    ports = midi.MidiPorts(config.midi_backend, out_name, in_name, on_input)
    ports.open()
    return ports


def raise_priority(priority: int = RT_PRIORITY) -> str | None:
    """Give the calling thread SCHED_FIFO, else a better nice value; what worked, or None.

    Only this thread: its waits are short sleeps plus <= 1 ms spins, so it cannot hog a core.
    """
    if hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread
            return "fifo"
        except OSError:
            pass  # EPERM without CAP_SYS_NICE / rtprio limit: try nice next
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -10)
            return "nice"
        except OSError:
            return None  # unprivileged: the clock still runs, just with more jitter under load
    return None


def _helper_priority(config: PlayerConfig) -> None:
    """The pipe threads hold the GIL while they (un)pickle; a JACK callback that waits for it must not
    wait on a thread that torch's threads keep off the CPU, so they get a low SCHED_FIFO too."""
    if config.realtime and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(HELPER_RT_PRIORITY))
        except OSError:
            return  # not allowed here: the pipe threads run at normal priority, as before


def open_audio(config: PlayerConfig, emit):
    if config.audio == "none":
        return None, None
    try:
        from deepdrummer_live.player.audio import LoopAudio

        audio = LoopAudio(config.audio_backend, config.audio_sr, config.audio_out_path)
        audio.start()
    except Exception as exc:  # pyo raises many types; any of them means "no audio here"
        if config.audio_required:
            fix = "" if "--audio none" in str(exc) else ("; start the audio system, use --audio-backend offline, "
                                                          "or --audio none")
            raise UsageError(f"--audio pyo: no audio output: {exc}{fix}") from exc
        # the default audio on a machine without any: MIDI keeps fully working, and the log says so
        emit(msg.error(f"running without audio: {exc}", "/dd/audio"))
        return None, None
    return audio, f"pyo/{config.audio_backend}"


def player_main(config: PlayerConfig, cmd_conn, evt_conn) -> None:
    """Entry point of the player process."""
    import gc

    if config.stderr_path is not None:
        # C libraries write diagnostics straight to fd 2; the daemon's stderr stays one line per error.
        fd = os.open(config.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
    sys.setswitchinterval(0.0002)  # the engine thread and the JACK callback get the GIL back quickly from helpers
    outbox: queue.SimpleQueue = queue.SimpleQueue()

    def sender() -> None:
        _helper_priority(config)
        while True:
            event = outbox.get()
            if event is None:
                return
            try:
                evt_conn.send(event)
            except (OSError, EOFError):
                return  # the parent is gone; the command pipe's EOF stops the engine

    sender_thread = threading.Thread(target=sender, name="dd-player-events", daemon=True)
    sender_thread.start()
    emit = outbox.put
    engine = None
    try:
        config.validate()
        controller = None
        if config.controller:
            from deepdrummer_live.player.controller import load_mapping

            controller = load_mapping(config.controller)
        if config.learned is not None:
            from deepdrummer_live.player.midilearn import load_learned, overlay

            learned = load_learned(config.learned)
            if learned is not None:
                controller = overlay(controller, learned)
        holder: dict = {}

        def on_input(data, t):
            target = holder.get("engine")
            if target is not None:  # input before the engine exists is dropped
                target.on_midi_input(data, t)

        ports = open_ports(config, on_input)
        # the clock runs on the ports' time where they keep one (JACK's frames), else on perf_counter
        clock_source = make_clock(config, ports.clock() if hasattr(ports, "clock") else time.perf_counter())
        audio, audio_name = open_audio(config, emit)
        engine = Sequencer(config, ports, clock_source, emit, audio=audio, controller=controller,
                           reopen=lambda: open_ports(config, on_input, continue_from=holder["engine"].now()))
        holder["engine"] = engine
    except UsageError as exc:
        emit(msg.fatal(str(exc)))
        outbox.put(None)
        sender_thread.join(timeout=5)
        return

    def reader() -> None:
        _helper_priority(config)
        while True:
            try:
                cmd = cmd_conn.recv()
            except (EOFError, OSError):
                cmd = msg.shutdown()  # the parent died or closed: stop cleanly
            if not isinstance(cmd, dict):
                cmd = {"type": repr(cmd)}  # answered with an error event by the engine
            engine.inbox.put(("cmd", cmd))
            if cmd.get("type") == "shutdown":
                return

    threading.Thread(target=reader, name="dd-player-commands", daemon=True).start()
    # the engine runs on this (main) thread of the child, so priority applies to it alone
    priority = raise_priority() if config.realtime else None
    ready: msg.Ready = {"type": "ready", "midi_out": ports.out_full_name, "midi_in": ports.in_full_name,
                        "audio": audio_name, "priority": priority, "midi_writer": ports.writer}
    emit(ready)
    gc.collect()
    gc.freeze()  # fewer objects for the collector to walk while the clock runs
    try:
        engine.run()
    finally:
        engine.close()
        outbox.put(None)
        sender_thread.join(timeout=5)
