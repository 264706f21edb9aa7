"""`deepdrummer-live run`: wires the daemon (store, learner, session, player, surfaces) and runs it until
SIGINT/SIGTERM. The one place that does: `cli/main.py` parses the flags and calls `cmd_run`, and
`cli/experiment.py` calls it with its own session factory."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from deepdrummer_live.cli.flags import flag_errors
from deepdrummer_live.errors import UsageError
from deepdrummer_live.paths import default_state_dir
from deepdrummer_live.vocab import (
    DEFAULT_METER,
    DEFAULT_TEMPO,
    WEB_HOST,
    WEB_PORT,
    check_midi_offset,
    check_tempo,
    profile_problem,
    shape_problem,
    swing_problem,
)

log = logging.getLogger("deepdrummer_live")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StartupBuffer(logging.Handler):
    """Holds stderr log lines until start-up succeeds, so a failed start prints one line only."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def release_to(self, handler: logging.Handler) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.addHandler(handler)
        for record in self.records:
            if record.levelno >= root.level:
                handler.handle(record)
        self.records.clear()


def setup_logging(level: str, state_dir: Path | None = None) -> StartupBuffer:
    """Log to <state-dir>/daemon.log now, to stderr once `release_to` is called."""
    buffer = StartupBuffer()
    handlers: list[logging.Handler] = [buffer]
    if state_dir is not None:
        handlers.append(logging.FileHandler(state_dir / "daemon.log"))
    logging.basicConfig(level=getattr(logging, level), handlers=handlers, format=LOG_FORMAT, force=True)
    return buffer


def stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def check_run_flags(args) -> None:
    for flag, check, value in (("--tempo", check_tempo, args.tempo), ("--midi-offset-ms", check_midi_offset,
                                                                      args.midi_offset_ms)):
        try:
            if value is not None:
                check(value)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    if args.clock == "midi" and args.midi_in is None:
        raise UsageError("--clock midi needs an input port to hear the clock on; add --midi-in NAME")
    if args.clock == "midi" and args.midi_backend == "none":
        raise UsageError("--clock midi with --midi-backend none: no MIDI to follow; pick a MIDI backend")
    problem = swing_problem(args.swing) if args.swing is not None else None
    if problem:
        raise UsageError(f"--{problem}")
    problem = shape_problem(args.rows, args.bars, args.meter)
    if problem:
        raise UsageError(f"--{problem}")
    problem = profile_problem(args.profile) if args.profile is not None else None
    if problem:
        raise UsageError(f"--profile: {problem}")
    for host, port in args.notify:
        try:  # a receiver that no datagram could ever reach is a bad flag, not a silent loss
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UsageError(f"--notify {host}:{port}: host {host!r} cannot be resolved ({exc}); give an IP "
                             f"address (e.g. 127.0.0.1:{port}) or a name this machine knows") from None


def resolve_kind(args, critic_path: Path | None, checkpoint: Path):
    """The critic kind of a run: --paper / --critic-kind when given, else the kind of the --critic file,
    else the kind of the state dir's own critic (a resumed session goes on with its critic), else the default."""
    from deepdrummer_live.learn.kinds import kind_for, kind_of_file

    if args.paper or args.critic_kind:
        with flag_errors("--paper/--critic-kind"):
            return kind_for(args.paper, args.critic_kind)
    for path in (critic_path, checkpoint):
        name = kind_of_file(path) if path is not None and path.exists() else None
        if name is not None:
            return kind_for(False, name)
    return kind_for(False)


def cmd_run(args, session_factory: Callable | None = None) -> int:
    """The daemon until SIGINT/SIGTERM. `session_factory(learner, store, **settings)` makes the session
    (default: `Session`; `experiment` passes its planned session)."""
    check_run_flags(args)
    from deepdrummer_live.learn import checkpoint
    from deepdrummer_live.learn.kinds import resolve_critic_source
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.learn.search import resolve_device
    from deepdrummer_live.playback import VirtualPlayback
    from deepdrummer_live.session import Session
    from deepdrummer_live.sound.kit import load_kit
    from deepdrummer_live.storage.dataset import KIT_PATH_META
    from deepdrummer_live.storage.store import Store
    from deepdrummer_live.surfaces.osc import OscServer

    with flag_errors("--device"):
        device = resolve_device(args.device)
    state_dir = args.state_dir or default_state_dir()
    store = Store(state_dir)
    startup_log = setup_logging(args.log_level, store.dir)
    osc = OscServer(args.osc_host, args.osc_port, args.notify, args.osc_allow)
    web = None
    playback = None
    events = EventForwarder()
    try:
        web_port = WEB_PORT if args.web_port is None else args.web_port
        if web_port:  # bound now: a busy port fails in a second, not after the learner warm-up
            from deepdrummer_live.surfaces.web import WebServer

            try:
                web = WebServer(args.web_host, web_port, store.dir)
            except UsageError as exc:
                if args.web_port is not None or args.web_host != WEB_HOST:
                    raise  # a page asked for with a flag that cannot be used: exit 2, as for any flag
                # The default port taken (e.g. by a second daemon): run on without the page, and say so.
                log.warning("no rating page: %s", exc)
        from deepdrummer_live.player.notemap import NoteMap

        with flag_errors("--note-map"):
            note_map = NoteMap.load(args.note_map)
        with flag_errors("--kit"):
            kit = load_kit(args.kit)
        store.set_meta(KIT_PATH_META, str(kit.root))  # so `dataset export` renders with the same kit
        for note in kit.notes:
            log.info("kit: %s", note)
        # The tempo the player starts at: the flag, else the resumed session's (the Session decides the same way).
        resumed_tempo = store.get_meta("tempo") if args.clock == "internal" else None
        start_tempo = args.tempo if args.tempo is not None else float(resumed_tempo or DEFAULT_TEMPO)
        player_config = resolve_player(args, start_tempo, store.dir)
        if player_config is not None:
            # Ports first: a busy or missing MIDI system fails in a second, not after the learner warm-up.
            from deepdrummer_live.player.handle import PlayerHandle

            playback = PlayerHandle(player_config, events)
            ready = playback.start()
            log.info("player: MIDI out %s, MIDI in %s (writer %s), audio %s", ready.get("midi_out"),
                     ready.get("midi_in"), ready.get("midi_writer"), ready.get("audio"))
        seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
        t0 = time.perf_counter()
        with flag_errors("--critic"):
            critic_path = resolve_critic_source(args.critic) if args.critic else None
        kind = resolve_kind(args, critic_path, store.checkpoint_path)
        config = replace(kind.config, half_life=args.half_life) if args.half_life is not None else None
        learner = Learner(kit, device, seed, kind=kind, config=config)
        start = checkpoint.choose_start(learner, store.checkpoint_path, critic_path)
        if critic_path is not None and not learner.resumed:
            # The state dir's own copy at once: a crash before the first rating's checkpoint must not
            # resume the session from a fresh critic instead of the one it was started from.
            checkpoint.save(learner, store)
        log.info("kit %s: %d samples; critic %s on %s; %s; ready in %.1f s", kit.name, len(kit),
                 learner.kind.describe(learner.model), device, start, time.perf_counter() - t0)
        audio_sr = player_config.audio_sr if player_config and player_config.audio != "none" else None
        if not learner.kind.reads(args.bars or 1, args.meter or DEFAULT_METER):
            raise UsageError(f"--bars/--meter: the {learner.kind.name} critic hears one bar of 4/4 only; "
                             f"drop --critic-kind/--paper (the default critic reads any shape)")
        session = (session_factory or Session)(learner, store, tempo=args.tempo, clock=args.clock,
                                               audio_sr=audio_sr, swing=args.swing, note_map=note_map, rows=args.rows,
                                               bars=args.bars, meter=args.meter, profile=args.profile)
        if args.switch is not None:
            session.set_switch(args.switch)
        if playback is None:
            playback = VirtualPlayback(session.tempo, session.on_player_event)
        elif session.tempo != player_config.tempo:
            playback.set_tempo(session.tempo)  # the resumed session's tempo
        session.attach_playback(playback)
        events.attach(session.on_player_event)
        osc.start(session)
        if web is not None:
            web.start(session)
            log.info("web page: %s", web.url)
        session.start(autoplay=args.autoplay)
        log.info("OSC on %s:%d; state dir %s", *osc.address, store.dir)
        startup_log.release_to(stderr_handler())
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        if not args.headless and sys.stdout.isatty():
            from deepdrummer_live.surfaces.tui import run_tui

            run_tui(session, stop, web_url=web.url if web else None)
        else:
            while not stop.wait(0.5):
                pass
        log.info("shutting down")
        session.shutdown()
        return 0
    finally:
        if web is not None:
            web.stop()
        osc.stop()
        if playback is not None:
            playback.close()
        store.close()


class EventForwarder:
    """Player events go to the session once it exists. Earlier ones are kept and replayed then:
    a Link or MIDI-clock tempo learnt during the learner's warm-up must not be lost."""

    def __init__(self):
        self._target = None
        self._early: deque = deque(maxlen=256)
        self._lock = threading.Lock()

    def attach(self, target) -> None:
        with self._lock:
            early, self._early = list(self._early), deque()
            self._target = target
        for event in early:
            target(event)

    def __call__(self, event: dict) -> None:
        with self._lock:
            target = self._target
            if target is None:
                if event.get("type") == "error":
                    log.warning("player: %s", event.get("message"))
                if event.get("type") != "step":
                    self._early.append(event)
                return
        target(event)


def resolve_player(args, start_tempo: float, state_dir: Path):
    """PlayerConfig for the player process, or None when neither MIDI nor audio is wanted."""
    from deepdrummer_live.player import midi

    backend = args.midi_backend
    if backend is None:
        backend = midi.default_backend()
        if backend is None:
            log.warning("no MIDI system found (no ALSA sequencer, no JACK server): running without MIDI; "
                        "start JACK or load snd-seq, or pass --midi-backend none to silence this")
            backend = "none"
    audio = args.audio or "pyo"
    if backend == "none" and audio == "none" and args.clock == "internal":
        return None
    from deepdrummer_live.player.midilearn import LEARNED_FILE
    from deepdrummer_live.player.protocol import PlayerConfig

    audio_backend = args.audio_backend or ("jack" if backend == "jack" or midi.jack_server_running() else "portaudio")
    return PlayerConfig(midi_backend=backend, midi_out=args.midi_out, midi_in=args.midi_in, clock=args.clock,
                        tempo=start_tempo, midi_offset_ms=args.midi_offset_ms, controller=args.controller,
                        learned=state_dir / LEARNED_FILE,
                        audio=audio, audio_backend=audio_backend,
                        audio_required=audio == "pyo" and (args.audio == "pyo" or args.audio_backend is not None),
                        audio_out_path=state_dir / "live-audio.wav" if audio_backend == "offline" else None,
                        stderr_path=state_dir / "player.log")
