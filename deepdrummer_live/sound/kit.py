"""Kits: folders of one-shots, each sample with a General MIDI drum role and note.

A kit is any folder of wav/aiff/flac one-shots (nested folders, any rate, mono or stereo,
16/24/32-bit int or float). Roles come from `kit.toml` when present, else from the file
name, else "perc". Junk files are skipped with one note each; a folder with no usable
sample is a `KitError` naming the folder.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from deepdrummer_live import paths
from deepdrummer_live.errors import KitError
from deepdrummer_live.vocab import GM_NOTES  # noqa: F401  (re-exported: kits name roles by it)

AUDIO_SUFFIXES = {".wav", ".wave", ".aif", ".aiff", ".aifc", ".flac"}
TAIL_FLOOR = 1e-4  # -80 dBFS
MAX_SAMPLE_SECONDS = 10.0  # a one-shot longer than this is a loop or a song, not a drum hit
DEFAULT_KIT = "dd-analog"

# General MIDI percussion key map (channel 10) for each role we recognise.

# Name patterns, tried in order: the first match wins, so specific ones come first.
_ROLE_PATTERNS: list[tuple[str, str]] = [
    ("open_hat", r"open ?hat|openhh|hh ?open|hhopen|(^|[^a-z])oh([^a-z]|$)"),
    ("pedal_hat", r"pedal ?hat|(^|[^a-z])ph([^a-z]|$)"),
    ("closed_hat", r"closed ?hat|hh ?closed|hhclosed|hi ?hat|hat|(^|[^a-z])(hh|ch)([^a-z]|$)"),
    ("kick", r"kick|bass ?drum|(^|[^a-z])bd([^a-z]|$)"),
    ("rim", r"rim"),
    ("snare", r"snare|(^|[^a-z])sd([^a-z]|$)"),
    ("clap", r"clap|(^|[^a-z])cp([^a-z]|$)"),
    ("tom_high", r"tom ?hi|hi ?tom|high ?tom|tom ?high"),
    ("tom_low", r"tom ?lo|lo ?tom|low ?tom|floor ?tom"),
    ("tom_mid", r"tom"),
    ("crash", r"crash|cymbal|(^|[^a-z])cy([^a-z]|$)"),
    ("ride", r"ride"),
    ("cowbell", r"cowbell|(^|[^a-z])cb([^a-z]|$)"),
    ("shaker", r"shak|maraca"),
    ("tambourine", r"tamb"),
    ("conga", r"conga|bongo"),
    ("clave", r"clave"),
]


def role_from_name(name: str) -> str:
    """Guess a GM role from a sample's file name ("Vermona_Kick_02" -> "kick")."""
    lowered = name.lower().replace("_", " ").replace("-", " ")
    for role, pattern in _ROLE_PATTERNS:
        if re.search(pattern, lowered):
            return role
    return "perc"


@dataclass
class KitSample:
    name: str  # path relative to the kit root, without suffix ("808/clean/kick01")
    path: Path
    role: str
    note: int
    audio: np.ndarray  # float32 mono, at `sr`
    sr: int


@dataclass
class Kit:
    name: str
    root: Path
    samples: list[KitSample]
    notes: list[str] = field(default_factory=list)  # one line per skipped file
    _bank_cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    @property
    def roles(self) -> list[str]:
        return [s.role for s in self.samples]

    def ids_with_role(self, role: str) -> list[int]:
        return [i for i, s in enumerate(self.samples) if s.role == role]

    def index_of(self, name: str) -> int:
        for i, s in enumerate(self.samples):
            if s.name == name:
                return i
        raise KitError(f"sample {name!r} is not in kit {self.name!r}; "
                       f"re-rate with this kit or start with the kit the loop was made with")

    def audio_at(self, sr: int) -> list[np.ndarray]:
        """Every sample resampled to `sr` (float32 mono), cached per rate."""
        key = ("audio", sr)
        if key not in self._bank_cache:
            out = []
            for s in self.samples:
                y = s.audio if s.sr == sr else soxr.resample(s.audio, s.sr, sr, quality="HQ")
                out.append(np.ascontiguousarray(y, dtype=np.float32))
            self._bank_cache[key] = out
        return self._bank_cache[key]


def trim_tail(audio: np.ndarray, floor: float = TAIL_FLOOR) -> np.ndarray:
    """Drop the trailing samples quieter than `floor` (dither and noise after the hit has died).

    Part of the kit's definition, so the critic, the live audio and the .wav all hear the same.
    """
    loud = np.flatnonzero(np.abs(audio) >= floor)
    return audio[: loud[-1] + 1] if loud.size else audio


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1).astype(np.float32), int(sr)


def _why_unreadable(exc: Exception) -> str:
    # libsndfile's own sentence ("Format not recognised") without the path it repeats.
    text = getattr(exc, "error_string", None) or str(exc) or exc.__class__.__name__
    return text.strip().rstrip(".")


def _load_sample(path: Path, root: Path, role: str | None, note: int | None) -> KitSample | str:
    """A KitSample, or a one-line note saying why the file is skipped."""
    rel = path.relative_to(root).with_suffix("").as_posix()
    try:
        if path.stat().st_size == 0:
            return f"skipped {path}: empty file (0 bytes); remove it or re-export it"
        info = sf.info(str(path))
    except Exception as exc:  # soundfile/OS raise several types for junk; all mean "not audio"
        return f"skipped {path}: not readable audio ({_why_unreadable(exc)}); re-export it as wav/aiff/flac"
    if info.frames <= 0 or info.samplerate <= 0:
        return f"skipped {path}: zero-length audio; remove it or re-export it"
    if info.frames / info.samplerate > MAX_SAMPLE_SECONDS:
        return (f"skipped {path}: {info.frames / info.samplerate:.1f} s long, one-shots must be "
                f"<= {MAX_SAMPLE_SECONDS:.0f} s; trim it")
    try:
        audio, sr = _read_mono(path)
    except Exception as exc:  # header parsed but the data is truncated or corrupt
        return f"skipped {path}: unreadable audio data ({_why_unreadable(exc)}); re-export it as wav"
    if audio.size == 0:
        return f"skipped {path}: zero-length audio; remove it or re-export it"
    if not np.all(np.isfinite(audio)):
        return f"skipped {path}: contains NaN or infinite values; re-export it"
    if not np.any(audio):
        return f"skipped {path}: digital silence; remove it or re-export it"
    if role is None:
        role = role_from_name(rel.rsplit("/", 1)[-1])
    if role not in GM_NOTES:
        return f"skipped {path}: role {role!r} unknown; use one of {', '.join(GM_NOTES)}"
    return KitSample(rel, path, role, note if note is not None else GM_NOTES[role], trim_tail(audio), sr)


def _toml_entries(root: Path) -> dict[Path, tuple[str | None, int | None]]:
    """Roles and notes declared in `root/kit.toml` (absent file: none), keyed by resolved path."""
    manifest = root / "kit.toml"
    if not manifest.exists():
        return {}
    fix = "fix it or delete it to guess roles from file names"
    try:
        doc = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise KitError(f"{manifest}: not valid TOML ({exc}); {fix}") from None
    if "name" in doc and not isinstance(doc["name"], str):
        raise KitError(f"{manifest}: name {doc['name']!r} is not a string; write name = \"my-kit\"")
    entries_in = doc.get("sample", [])
    if not isinstance(entries_in, list):
        raise KitError(f"{manifest}: 'sample' must be a list of [[sample]] tables, not "
                       f"{type(entries_in).__name__}; {fix}")
    entries = {}
    for i, entry in enumerate(entries_in):
        where = f"{manifest}: [[sample]] #{i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise KitError(f"{where} has no file name; add file = \"name.wav\"")
        file = entry["file"]
        path = (root / file).resolve()
        if not path.is_file() or not path.is_relative_to(root.resolve()):
            raise KitError(f"{where}: file {file!r} is not in {root}; fix the name or remove the entry")
        role = entry.get("role")
        if role is not None and role not in GM_NOTES:
            raise KitError(f"{where}: role {role!r} for {file} is unknown; use one of {', '.join(GM_NOTES)}")
        note = entry.get("note")
        if note is not None and (isinstance(note, bool) or not isinstance(note, int) or not 0 <= note <= 127):
            raise KitError(f"{where}: note {note!r} for {file} is not 0-127; use a GM drum note "
                           f"(e.g. {GM_NOTES.get(role or 'kick', 36)})")
        entries[path] = (role, note)
    return entries


def builtin_kit_names() -> list[str]:
    return sorted(p.name for p in paths.builtin_kits_dir().iterdir() if (p / "kit.toml").is_file())


def resolve_kit_path(name_or_dir: str | Path | None) -> Path:
    """A folder, else a built-in kit's name, else a kit built into the user's kits dir by `kits build`.

    KitError naming the value when none exists.
    """
    if name_or_dir is None:
        name_or_dir = DEFAULT_KIT
    candidate = Path(name_or_dir).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    if candidate.is_file():
        raise KitError(f"kit {str(name_or_dir)!r} is a file; give the folder that holds the one-shots "
                       f"({candidate.resolve().parent})")
    for kits_dir in (paths.builtin_kits_dir(), paths.user_kits_dir()):
        named = kits_dir / str(name_or_dir)
        if named.is_dir():
            return named.resolve()
    raise KitError(f"kit {str(name_or_dir)!r}: no such kit or folder; give a folder of one-shots "
                   f"(built-in kits: {', '.join(builtin_kit_names())})")


def load_kit(name_or_dir: str | Path | None = None) -> Kit:
    """Load every usable one-shot under a kit folder (recursively, sorted by path)."""
    root = resolve_kit_path(name_or_dir)
    declared = _toml_entries(root)
    samples: list[KitSample] = []
    notes: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name == "kit.toml":
            continue
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            notes.append(f"skipped {path}: not a wav/aiff/flac file; convert it if it is a drum hit")
            continue
        role, note = declared.get(path.resolve(), (None, None))
        loaded = _load_sample(path, root, role, note)
        if isinstance(loaded, str):
            notes.append(loaded)
        else:
            samples.append(loaded)
    if not samples:
        why = f" ({len(notes)} files skipped, first: {notes[0].split(': ', 1)[-1]})" if notes else ""
        raise KitError(f"kit folder {root} has no usable one-shots (wav/aiff/flac){why}; "
                       f"give a folder of drum samples")
    return Kit(root.name, root, samples, notes)
