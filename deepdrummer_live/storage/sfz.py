"""Each library loop's own kit as SFZ, and a small SFZ player that renders a .mid through it.

The SFZ we write (standard SFZ v1 opcodes only; sfizz loads it) has one region per row of the loop:

    <control> default_path=<stem>-samples/
    <global>  loop_mode=one_shot  volume=<the loop's mix gain, dB>  amp_velcurve_<v>=<gain> per level
    <region>  key=<the row's note>  sample=<its one-shot>

A hit's velocity v = round(127 x level / 9) (contract), and `amp_velcurve_v` is that level's gain
relative to the loudest, so each velocity plays at exactly the gain the .wav gave its level;
`volume` carries the rest (MIX_GAIN and the loop's headroom gain). `render_midi` plays a .mid
through such a file the way a sampler does (one-shots to their end, a loop heard in steady state:
tails wrap to the bar's start); it understands only the opcodes written here and says so otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from deepdrummer_live.errors import DeepDrummerError
from deepdrummer_live.sound.dynamics import MAX_LEVEL, velocity

MIN_VOLUME_DB = -144.0  # SFZ's range for `volume`
HEADERS = ("control", "global", "group", "region")
_OPCODE = re.compile(r"([A-Za-z0-9_]+)=(.*?)(?=\s+[A-Za-z0-9_]+=|$)")
_HEADER = re.compile(r"<([a-z]+)>")


class SfzError(DeepDrummerError):
    """An SFZ file outside the subset this module writes and plays."""


def sfz_text(regions: list[tuple[int, str]], default_path: str, gain: float, level_gains: list[float],
             *, title: str = "") -> str:
    """SFZ text: regions (note, sample file), the loop's linear mix gain, gains of levels 1..9."""
    loudest = max(level_gains)
    total = gain * loudest
    volume = 20.0 * math.log10(total) if total > 0 else MIN_VOLUME_DB
    lines = [f"// {title}" if title else "// DeepDrummer Live loop",
             "// velocity v = round(127 x level / 9) plays at that level's gain; the .mid of the same",
             "// name played through this file gives the .wav (one bar, looped).",
             "<control>", f"default_path={default_path}",
             "<global>", "loop_mode=one_shot", f"volume={max(volume, MIN_VOLUME_DB)!r}"]
    lines += [f"amp_velcurve_{velocity(level)}={g / loudest!r}" for level, g in
              zip(range(1, MAX_LEVEL + 1), level_gains)]
    for note, sample in regions:
        lines += ["<region>", f"key={note}", f"sample={sample}"]
    return "\n".join(lines) + "\n"


@dataclass
class Region:
    sample: Path
    lokey: int
    hikey: int
    volume_db: float = 0.0
    velcurve: dict[int, float] = field(default_factory=dict)

    def gain(self, vel: int) -> float:
        """Linear gain of a note-on at `vel`: the velocity curve (SFZ interpolates linearly between its
        points; without points, the default amp_veltrack=100 curve (v/127)^2) times `volume`."""
        if self.velcurve:
            points = {0: 0.0, 127: 1.0} | self.velcurve
            xs = sorted(points)
            curve = float(np.interp(vel, xs, [points[x] for x in xs]))
        else:
            curve = (vel / 127.0) ** 2
        return curve * 10.0 ** (self.volume_db / 20.0)


def parse_sfz(path: Path) -> list[Region]:
    """The regions of an SFZ file in the subset `sfz_text` writes (headers inherit into regions)."""
    path = Path(path)
    text = re.sub(r"//[^\n]*", "", path.read_text())
    scopes: dict[str, dict[str, str]] = {h: {} for h in HEADERS}
    regions: list[Region] = []
    current = None

    def close_region():
        if current == "region":
            regions.append(_region({**scopes["global"], **scopes["group"], **scopes["region"]},
                                   path.parent / scopes["control"].get("default_path", "")))

    for line in text.splitlines():
        pos = 0
        for m in _HEADER.finditer(line):
            close_region()
            current = m.group(1)
            if current not in HEADERS:
                raise SfzError(f"{path}: header <{current}> is not supported; use {', '.join(HEADERS)}")
            if current in ("global", "group", "region"):  # a new scope starts empty; narrower ones too
                for h in HEADERS[HEADERS.index(current):]:
                    scopes[h] = {}
            pos = m.end()
        rest = line[pos:].strip() if pos else line.strip()
        for m in _OPCODE.finditer(rest):
            if current is None:
                raise SfzError(f"{path}: opcode {m.group(0)!r} before any header")
            scopes[current][m.group(1)] = m.group(2).strip()
    close_region()
    return regions


def _region(opcodes: dict[str, str], base: Path) -> Region:
    velcurve, known = {}, {"sample", "key", "lokey", "hikey", "pitch_keycenter", "volume", "loop_mode",
                           "amp_veltrack"}
    for name, value in opcodes.items():
        if name.startswith("amp_velcurve_"):
            velcurve[int(name.rsplit("_", 1)[1])] = float(value)
        elif name not in known:
            raise SfzError(f"opcode {name}={value} is not supported by this player; it plays only what "
                           f"sfz_text writes")
    if opcodes.get("loop_mode", "one_shot") != "one_shot" or opcodes.get("amp_veltrack", "100") != "100":
        raise SfzError(f"loop_mode {opcodes.get('loop_mode')} / amp_veltrack {opcodes.get('amp_veltrack')}: "
                       f"only one_shot and 100 are supported")
    key = opcodes.get("key")
    lo = int(opcodes.get("lokey", key if key is not None else 0))
    hi = int(opcodes.get("hikey", key if key is not None else 127))
    if "pitch_keycenter" in opcodes and not lo == hi == int(opcodes["pitch_keycenter"]):
        raise SfzError("transposing regions are not supported; a drum region plays its sample as is")
    if "sample" not in opcodes:
        raise SfzError(f"a region for keys {lo}-{hi} has no sample=")
    return Region(base / opcodes["sample"], lo, hi, float(opcodes.get("volume", 0.0)), velcurve)


def _note_ons(mid: mido.MidiFile) -> tuple[list[tuple[int, int, int]], int, list[tuple[int, int]]]:
    """(tick, note, velocity) of every note-on, the length in ticks, and the tempo map [(tick, us/beat)]."""
    ons, tempos, end = [], [(0, 500000)], 0
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
            elif msg.type == "note_on" and msg.velocity > 0:
                ons.append((tick, msg.note, msg.velocity))
        end = max(end, tick)
    tempos.sort(key=lambda t: t[0])  # stable: a set_tempo at tick 0 follows (overrides) the default
    return ons, end, tempos


def _tick_to_sample(tick: int, tempos: list[tuple[int, int]], tpb: int, sr: int) -> int:
    """Exact (integer arithmetic, rounded half up) sample position of `tick` under a tempo map."""
    num, den = 0, tpb * 1_000_000  # sample position as num / den
    for i, (start, tempo) in enumerate(tempos):
        stop = tempos[i + 1][0] if i + 1 < len(tempos) else None
        if tick <= start:
            break
        span = (tick if stop is None or tick < stop else stop) - start
        num += span * tempo * sr
    return (2 * num + den) // (2 * den)


def render_midi(mid_path: Path, sfz_path: Path, sr: int) -> np.ndarray:
    """Play a one-bar .mid through an SFZ, looped (tails past the end wrap to the start) -> float64."""
    mid = mido.MidiFile(mid_path)
    regions = parse_sfz(sfz_path)
    ons, end, tempos = _note_ons(mid)
    bar_len = _tick_to_sample(end, tempos, mid.ticks_per_beat, sr)
    cache: dict[Path, np.ndarray] = {}
    out = np.zeros(bar_len, dtype=np.float64)
    for tick, note, vel in ons:
        for region in regions:
            if region.lokey <= note <= region.hikey:
                if region.sample not in cache:
                    audio, file_sr = sf.read(region.sample, dtype="float64", always_2d=True)
                    if file_sr != sr:
                        raise SfzError(f"{region.sample} is at {file_sr} Hz; render at {file_sr}")
                    cache[region.sample] = audio.mean(axis=1)
                audio = cache[region.sample] * region.gain(vel)
                start = _tick_to_sample(tick, tempos, mid.ticks_per_beat, sr)
                padded = np.zeros(-(-(start + len(audio)) // bar_len) * bar_len)
                padded[start:start + len(audio)] = audio
                out += padded.reshape(-1, bar_len).sum(axis=0)
    return out
