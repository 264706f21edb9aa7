"""`deepdrummer-live doctor`: checks what `run` needs, one line each, with the fix for each problem.

Each check is a function returning `Check`s; nothing here changes the machine (the state dir
is probed with a temp file that is removed again). Exit 0 when nothing FAILs, 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deepdrummer_live.errors import DeepDrummerError
from deepdrummer_live.paths import default_state_dir

OK, WARN, FAIL = "ok", "warn", "FAIL"
LOW_DISK_MB = 500  # a long session's library (.wav per liked loop) fits easily in this
MIN_DISK_MB = 20   # below this SQLite commits and checkpoints start failing


@dataclass
class Check:
    status: str  # ok | warn | FAIL
    what: str    # the thing checked ("ALSA sequencer")
    detail: str  # one line: what was found
    fix: str = ""  # what to do about it (warn/FAIL only)

    def lines(self) -> list[str]:
        out = [f"{self.status:<4}  {self.what}: {self.detail}"]
        if self.fix and self.status != OK:
            out.append(f"      fix: {self.fix}")
        return out


@contextmanager
def quiet_fd2():
    """Silence C libraries (ALSA, JACK, PortAudio) that print straight to file descriptor 2 while probing."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# --- MIDI ---------------------------------------------------------------------------------------

def ask_jack_server(timeout: float = 5.0) -> tuple[bool | None, str]:
    """(running?, how we know). None when there is no way to ask (no jack_lsp)."""
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    exe = shutil.which("jack_lsp")
    if exe is None:
        return None, f"server {server!r}: cannot ask (jack_lsp not installed)"
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}  # asking must not spawn a server
    try:
        proc = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"server {server!r}: jack_lsp hung for {timeout:g} s (a stuck server?)"
    if proc.returncode == 0:
        ports = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        return True, f"server {server!r} running ({len(ports)} ports)"
    return False, f"server {server!r} not running"


def check_midi_systems(platform: str = sys.platform) -> list[Check]:
    checks: list[Check] = []
    if platform == "darwin":
        return [Check(OK, "CoreMIDI", "macOS: virtual ports open through CoreMIDI (--midi-backend coremidi)")]
    if platform.startswith("win"):
        return [Check(WARN, "Windows MIDI", "Windows MIDI (winmm) cannot create virtual ports",
                      "install loopMIDI (or loopBe1), create a port named DeepDrummer, then pass "
                      "--midi-backend winmm --midi-out DeepDrummer; or use --midi-backend none")]
    seq = Path("/dev/snd/seq")
    if not seq.exists():
        checks.append(Check(WARN, "ALSA sequencer", "/dev/snd/seq is missing",
                            "load it (sudo modprobe snd-seq); in a container pass --device /dev/snd; "
                            "or use JACK MIDI (--midi-backend jack)"))
    elif not os.access(seq, os.R_OK | os.W_OK):
        checks.append(Check(WARN, "ALSA sequencer", "/dev/snd/seq exists but this user cannot open it",
                            "add yourself to the audio group (sudo usermod -aG audio $USER) and log in again"))
    else:
        checks.append(Check(OK, "ALSA sequencer", "/dev/snd/seq is usable (--midi-backend alsa)"))
    with quiet_fd2():
        running, how = ask_jack_server()
    if running:
        checks.append(Check(OK, "JACK", how + " (--midi-backend jack, --audio-backend jack)"))
    else:
        checks.append(Check(WARN, "JACK", how,
                            "start one (jackd -d alsa -r 48000, or qjackctl, or PipeWire's pipewire-jack) "
                            "if you want JACK MIDI or pyo on JACK; otherwise use --midi-backend alsa "
                            "and --audio-backend portaudio or --audio none"))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and (Path(runtime) / "pipewire-0").exists():
        checks.append(Check(OK, "PipeWire", f"running ({runtime}/pipewire-0): its ALSA and JACK bridges "
                            "serve --midi-backend alsa/jack"))
    return checks


def check_jack_midi_writer() -> list[Check]:
    """Which MIDI writer --midi-backend jack uses: each message at its frame (JACK-Client), or rtmidi's."""
    from deepdrummer_live.player.jackmidi import unavailable

    why = unavailable()
    if why is None:
        return [Check(OK, "JACK MIDI writer", "--midi-backend jack writes each message at its frame in JACK's "
                      "cycle (JACK-Client; player/jackmidi.py)")]
    return [Check(WARN, "JACK MIDI writer", f"--midi-backend jack falls back to python-rtmidi's ports, which write "
                  f"at the start of a JACK period (up to one period late): {why}",
                  "pip install JACK-Client (libjack comes with jackd2 / pipewire-jack)")]


def check_rtmidi(platform: str = sys.platform) -> list[Check]:
    try:
        import rtmidi
    except ImportError as exc:
        return [Check(FAIL, "python-rtmidi", f"not importable ({exc})",
                      "pip install python-rtmidi (needs libasound2-dev / libjack-dev to build), "
                      "or run with --midi-backend none")]
    names = [rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api()]
    want = {"darwin": "core", "win32": "winmm"}.get(platform, "alsa")
    detail = f"compiled APIs: {', '.join(names) or 'none'}"
    if want not in names:
        return [Check(WARN, "python-rtmidi", f"{detail}; no {want} support for this platform",
                      f"rebuild python-rtmidi with {want} support (pip install --force-reinstall "
                      "--no-binary python-rtmidi python-rtmidi) or use one of the listed backends")]
    return [Check(OK, "python-rtmidi", detail)]


# --- audio ---------------------------------------------------------------------------------------

def check_audio() -> list[Check]:
    os.environ.setdefault("PYO_GUI_WX", "0")  # pyo's import banner is noise here
    try:
        with quiet_fd2():
            import pyo
    except Exception as exc:  # pyo's import can fail in several ways (missing libportaudio, ABI)
        return [Check(WARN, "pyo", f"not importable ({exc!r})",
                      "pip install pyo (needs portaudio19-dev, libsndfile1-dev); without it run with --audio none "
                      "and listen through the MIDI output")]
    checks = [Check(OK, "pyo", f"importable (version {getattr(pyo, 'PYO_VERSION', '?')})")]
    try:
        with quiet_fd2():
            outputs, _ = pyo.pa_get_output_devices()
            default = pyo.pa_get_default_output()
    except Exception as exc:  # PortAudio probing errors are C-level and vary by host API
        outputs, default = [], -1
        checks.append(Check(WARN, "PortAudio", f"probing failed ({exc!r})",
                            "use --audio-backend jack, or --audio none"))
        return checks
    if outputs and default >= 0:
        checks.append(Check(OK, "PortAudio", f"{len(outputs)} output devices; default #{default} "
                            "(--audio-backend portaudio)"))
    else:
        checks.append(Check(WARN, "PortAudio", "no audio output device",
                            "connect/enable a sound card, or use --audio-backend jack (with a JACK server) "
                            "or --audio none"))
    return checks


def check_default_run(midi_backend: str | None, jack_files: bool, jack_running: bool | None,
                      pyo_ok: bool, portaudio_ok: bool) -> list[Check]:
    """Would `run` with no flags start, and with what? Mirrors cli.resolve_player's defaults:
    MIDI from midi.default_backend(); audio always pyo, on JACK when JACK looks present
    (/dev/shm/jack* files), else on PortAudio. A MIDI failure stops `run`; an audio one does not."""
    checks = []
    if midi_backend is None:
        checks.append(Check(OK, "defaults", "no MIDI system found: `run` starts without MIDI "
                            "(the terminal surface, OSC and audio still work)"))
    elif midi_backend == "jack" and not jack_running:
        return [Check(FAIL, "defaults", "`run` would pick JACK MIDI (it found /dev/shm/jack* files, perhaps "
                      "left by a crashed server) but no JACK server answers, so it would stop at startup",
                      "start JACK, or remove stale /dev/shm/jack* files, or pass --midi-backend alsa|none")]
    else:
        checks.append(Check(OK, "defaults", f"`run` would open its MIDI ports via {midi_backend}"))
    audio_backend = "jack" if midi_backend == "jack" or jack_files else "portaudio"
    if not pyo_ok:
        checks.append(Check(WARN, "defaults", "`run` would play no audio: pyo is not importable",
                            "install pyo (see above), or pass --audio none to say you do not want audio"))
    elif audio_backend == "jack" and not jack_running:
        checks.append(Check(WARN, "defaults", "`run` would try pyo on JACK (it found /dev/shm/jack* files) "
                            "but no JACK server answers: it would play no audio",
                            "start JACK, or pass --audio-backend portaudio, or --audio none"))
    elif audio_backend == "portaudio" and not portaudio_ok:
        checks.append(Check(WARN, "defaults", "`run` would try pyo on PortAudio, which has no output device: "
                            "it would play no audio (MIDI is unaffected)",
                            "connect a sound card or start JACK; or pass --audio none to say you do not want audio"))
    else:
        checks.append(Check(OK, "defaults", f"`run` would play audio with pyo on {audio_backend}"))
    return checks


# --- torch, kit, learner ----------------------------------------------------------------------------

def check_device(name: str):
    """(checks, torch.device or None)."""
    try:
        import torch

        from deepdrummer_live.learn.search import resolve_device

        device = resolve_device(name)
    except DeepDrummerError as exc:
        return [Check(FAIL, "torch device", str(exc))], None
    detail = f"--device {name} -> {device}"
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(device)})"
    detail += f"; torch {torch.__version__}"
    checks = [Check(OK, "torch device", detail)]
    if name == "auto" and device.type == "cpu" and torch.version.cuda is not None:
        checks.append(Check(WARN, "CUDA", "this torch has CUDA support but sees no GPU",
                            "check nvidia-smi and CUDA_VISIBLE_DEVICES; the CPU works, just slower"))
    return checks, device


def check_kit(name):
    """(checks, Kit or None)."""
    from deepdrummer_live.sound.kit import load_kit

    try:
        kit = load_kit(name)
    except DeepDrummerError as exc:
        return [Check(FAIL, "kit", str(exc))], None
    roles = Counter(s.role for s in kit.samples)
    detail = (f"{kit.name} ({kit.root}): {len(kit)} samples; "
              + ", ".join(f"{r} x{n}" for r, n in sorted(roles.items())))
    checks = [Check(OK, "kit", detail)]
    for note in kit.notes[:5]:
        checks.append(Check(WARN, "kit", note))
    if len(kit.notes) > 5:
        checks.append(Check(WARN, "kit", f"... and {len(kit.notes) - 5} more files skipped",
                            "see daemon.log after `run`, which lists each one"))
    if len(kit) < 4:
        checks.append(Check(WARN, "kit", f"only {len(kit)} samples: every loop reuses them",
                            "add more one-shots (at least 4, ideally 20+ across kick/snare/hat/perc)"))
    return checks, kit


def check_learner(kit, device, seed: int | None, paper: bool) -> list[Check]:
    """Build the learner and make one proposal: proves torch, render, features and critic work together."""
    from deepdrummer_live.learn import checkpoint
    from deepdrummer_live.learn.learner import Learner

    t0 = time.perf_counter()
    try:
        from deepdrummer_live.learn.kinds import kind_for

        learner = Learner(kit, device, seed if seed is not None else 0, kind=kind_for(paper))
        start = checkpoint.choose_start(learner)
        learner.propose("explore", False)
    except DeepDrummerError as exc:
        return [Check(FAIL, "learner", str(exc))]
    except Exception as exc:  # any failure here is a broken install; show it rather than a traceback
        return [Check(FAIL, "learner", f"first proposal failed: {exc!r}",
                      "reinstall the package's dependencies (pip install -e .), or try --device cpu")]
    return [Check(OK, "learner", f"critic {learner.kind.describe(learner.model)} on {device}, {start}: "
                  f"first loop in {time.perf_counter() - t0:.1f} s")]


# --- state dir and port -------------------------------------------------------------------------------

def check_state_dir(state_dir: Path) -> list[Check]:
    d = Path(state_dir).expanduser()
    what = "state dir"
    if not d.exists():
        parent = next((p for p in d.parents if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            return [Check(FAIL, what, f"{d} does not exist and {parent} is not writable",
                          "pass --state-dir with a folder you can write")]
        checks = [Check(OK, what, f"{d} will be created (0700) on first run")]
        probe_dir = parent
    else:
        if not d.is_dir():
            return [Check(FAIL, what, f"{d} is not a folder", "pass --state-dir with a folder")]
        try:
            fd, tmp = tempfile.mkstemp(prefix=".doctor-", dir=d)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            return [Check(FAIL, what, f"{d} is not writable ({exc.strerror})",
                          f"chown/chmod it (chmod 700 {d}) or pass --state-dir with a writable folder")]
        mode = d.stat().st_mode & 0o777
        checks = [Check(OK, what, f"{d} is writable")]
        if mode & 0o077:
            checks.append(Check(WARN, what, f"permissions {mode:04o}: other users can read your ratings",
                                f"chmod 700 {d} (run does it too)"))
        checks.extend(describe_state(d))
        probe_dir = d
    free_mb = shutil.disk_usage(probe_dir).free / 2**20
    if free_mb < MIN_DISK_MB:
        checks.append(Check(FAIL, "disk", f"{free_mb:.0f} MB free under {probe_dir}",
                            "free some space or pass --state-dir on another disk"))
    elif free_mb < LOW_DISK_MB:
        checks.append(Check(WARN, "disk", f"{free_mb:.0f} MB free under {probe_dir}",
                            "free some space: each liked loop adds a .wav to the library"))
    else:
        checks.append(Check(OK, "disk", f"{free_mb / 1024:.1f} GB free under {probe_dir}"))
    return checks


def describe_state(d: Path) -> list[Check]:
    db_path = d / "state.sqlite"
    if not db_path.exists():
        return [Check(OK, "session", "no session yet (state.sqlite appears on first run)")]
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            loops = db.execute("SELECT COUNT(*) FROM loops").fetchone()[0]
            ratings = db.execute("SELECT COUNT(*) FROM ratings WHERE undone = 0").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [Check(FAIL, "session", f"{db_path} is unreadable ({exc})",
                      f"move it aside (mv {db_path} {db_path}.bad) to start a new session")]
    return [Check(OK, "session", f"{loops} loops, {ratings} ratings: `run` resumes them")]


def check_osc_port(port: int, host: str = "127.0.0.1") -> list[Check]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return [Check(FAIL, "OSC port", f"UDP {host}:{port} is busy ({exc.strerror}); "
                          "another deepdrummer-live or OSC app holds it",
                          f"stop that program, or pick a free port with --osc-port (e.g. {port + 1})")]
    return [Check(OK, "OSC port", f"UDP {host}:{port} is free")]


# --- the command -------------------------------------------------------------------------------------------

def run_checks(args) -> list[Check]:
    from deepdrummer_live.player import midi

    checks = check_midi_systems()
    checks += check_rtmidi()
    checks += check_jack_midi_writer()
    checks += check_audio()

    def passed(what: str) -> bool:
        return any(c.what == what and c.status == OK for c in checks)

    checks += check_default_run(midi.default_backend(), midi.jack_server_running(), passed("JACK"), passed("pyo"),
                                passed("PortAudio"))
    device_checks, device = check_device(args.device)
    checks += device_checks
    kit_checks, kit = check_kit(args.kit)
    checks += kit_checks
    if device is not None and kit is not None:
        checks += check_learner(kit, device, args.seed, args.paper)
    checks += check_state_dir(args.state_dir or default_state_dir())
    checks += check_osc_port(args.osc_port)
    return checks


def cmd_doctor(args) -> int:
    checks = run_checks(args)
    for check in checks:
        print("\n".join(check.lines()), flush=True)
    failed = [c for c in checks if c.status == FAIL]
    warned = [c for c in checks if c.status == WARN]
    print(f"\n{len(failed)} failed, {len(warned)} warnings, {len(checks) - len(failed) - len(warned)} ok")
    return 1 if failed else 0
