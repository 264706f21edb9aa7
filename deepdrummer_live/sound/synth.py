"""Built-in kits, synthesized here with numpy/scipy DSP (no recorded samples: license-clean).

Each instrument is a pure function `(rng, **params) -> float64[samples]` at `SR`; each kit is
one table of variants `(file stem, role, instrument, params, effects)`. `build_kits()` renders
every table to 16-bit mono WAV plus a `kit.toml`; a fixed seed per sample (CRC32 of the kit
and file name) makes the output byte-identical on every run.

The package ships the result (deepdrummer_live/data/kits, read through paths.py), so a run never
synthesizes. After changing a table, rebuild the shipped copy (tests/test_synth.py checks it):

    deepdrummer-live kits build --out deepdrummer_live/data/kits     # or `make kits`
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from deepdrummer_live.sound.kit import DEFAULT_KIT, GM_NOTES

SR = 44100
PEAK_DBFS = -1.0
FADE_S = 0.005
MAX_SECONDS = 1.5

# The six inharmonic square-wave pitches of the TR-808 cymbal/hat "metal" section (Hz).
_METAL_HZ = (205.3, 304.4, 369.6, 522.7, 540.0, 800.0)


# ---------------------------------------------------------------------------- building blocks

def _t(dur: float) -> np.ndarray:
    return np.arange(int(round(dur * SR))) / SR


def _env(t: np.ndarray, decay: float, attack: float = 0.0) -> np.ndarray:
    """Exponential decay (time constant `decay` s) with an optional linear attack."""
    env = np.exp(-t / decay)
    if attack > 0:
        env *= np.clip(t / attack, 0.0, 1.0)
    return env


def _sweep(t: np.ndarray, f_start: float, f_end: float, tau: float) -> np.ndarray:
    """Phase (radians) of an oscillator gliding exponentially from f_start to f_end."""
    freq = f_end + (f_start - f_end) * np.exp(-t / tau)
    return 2 * np.pi * np.cumsum(freq) / SR


def _square(t: np.ndarray, freq: float) -> np.ndarray:
    return np.sign(np.sin(2 * np.pi * freq * t + 0.1))  # +0.1 rad: no zero-valued start


def _filter(x: np.ndarray, kind: str, cutoff: float | tuple[float, float], order: int = 2) -> np.ndarray:
    """Butterworth low/high/band-pass; `cutoff` in Hz (a pair for "bandpass")."""
    sos = signal.butter(order, cutoff, btype=kind, fs=SR, output="sos")
    return signal.sosfilt(sos, x)


def _metal(t: np.ndarray, ratio: float = 1.0) -> np.ndarray:
    return sum(_square(t, f * ratio) for f in _METAL_HZ) / len(_METAL_HZ)


def _noise(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, t.size)


# ---------------------------------------------------------------------------- analog models

def kick(rng, *, f_start=160.0, f_end=50.0, pitch_tau=0.03, decay=0.25, click=0.3, drive=1.0, dur=0.6):
    """808/909 kick: sine with a falling pitch envelope, a noise click, optional tanh drive."""
    t = _t(dur)
    body = np.sin(_sweep(t, f_start, f_end, pitch_tau)) * _env(t, decay)
    tick = _filter(_noise(rng, t), "lowpass", 4000) * _env(t, 0.003)
    return np.tanh(drive * (body + click * tick)) / np.tanh(drive)


def snare(rng, *, tone_hz=(180.0, 330.0), tone_decay=0.06, noise_decay=0.12, noise_mix=0.6,
          noise_hp=1500.0, dur=0.4):
    """Two damped sine modes for the shell plus high-passed noise for the wires."""
    t = _t(dur)
    tone = sum(np.sin(_sweep(t, f * 1.3, f, 0.01)) for f in tone_hz) / len(tone_hz)
    wires = _filter(_noise(rng, t), "bandpass", (noise_hp, 9000.0))  # wires hiss, but not above ~9 kHz
    return (1 - noise_mix) * tone * _env(t, tone_decay) + noise_mix * wires * _env(t, noise_decay)


def hat(rng, *, decay=0.04, cutoff=7000.0, metal_mix=0.5, ratio=1.0, dur=0.2):
    """Hi-hat: 808 square-wave metal plus noise, high-passed; `decay` sets closed vs open."""
    t = _t(dur)
    src = metal_mix * _metal(t, ratio) + (1 - metal_mix) * _noise(rng, t)
    return _filter(src, "highpass", cutoff, order=4) * _env(t, decay, attack=0.0005)


def clap(rng, *, bursts=4, spacing=0.011, tail=0.12, band=(900.0, 2200.0), dur=0.45):
    """Hand clap: several short noise bursts (many hands) then a reverberant band-passed tail."""
    t = _t(dur)
    env = np.zeros_like(t)
    for i in range(bursts):
        start = i * spacing
        env += np.where(t >= start, np.exp(-(t - start) / 0.006), 0.0) * (t < start + spacing)
    env += 0.6 * np.where(t >= bursts * spacing, np.exp(-(t - bursts * spacing) / tail), 0.0)
    return _filter(_noise(rng, t), "bandpass", band) * env


def tom(rng, *, f_start=160.0, f_end=120.0, decay=0.2, noise_mix=0.08, dur=0.5):
    """Tom: sine with a small downward pitch bend and a little noise on the attack."""
    t = _t(dur)
    body = np.sin(_sweep(t, f_start, f_end, 0.05)) * _env(t, decay)
    return body + noise_mix * _filter(_noise(rng, t), "lowpass", 3000) * _env(t, 0.01)


def cowbell(rng, *, f1=540.0, f2=800.0, decay=0.12, dur=0.35):
    """808 cowbell: two detuned square oscillators through a band-pass, short then long decay."""
    t = _t(dur)
    tone = _filter(_square(t, f1) + _square(t, f2), "bandpass", (f1 * 0.9, f2 * 2.5))
    return tone * (0.6 * _env(t, 0.015) + 0.4 * _env(t, decay))


def rim(rng, *, freq=1700.0, decay=0.012, click=0.5, dur=0.1):
    """Rim shot: very short resonant tone plus a high click."""
    t = _t(dur)
    tone = np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(2 * np.pi * freq * 0.54 * t)
    return tone * _env(t, decay) + click * _filter(_noise(rng, t), "highpass", 3000) * _env(t, 0.002)


def clave(rng, *, freq=2500.0, decay=0.03, dur=0.15):
    """Clave: a near-pure sine with a fast decay (808 used a ringing bridged-T at ~2.5 kHz)."""
    t = _t(dur)
    return np.sin(2 * np.pi * freq * t) * _env(t, decay)


def conga(rng, *, freq=330.0, decay=0.12, bend=1.15, dur=0.35):
    """Conga/bongo: sine that starts slightly sharp (skin tension) with a soft slap."""
    t = _t(dur)
    body = np.sin(_sweep(t, freq * bend, freq, 0.015)) * _env(t, decay)
    return body + 0.15 * _filter(_noise(rng, t), "bandpass", (1000, 4000)) * _env(t, 0.004)


def cymbal(rng, *, decay=0.45, cutoff=5000.0, metal_mix=0.6, ratio=1.0, bell=0.0, dur=1.5):
    """Crash/ride: metal plus noise with a long decay; `bell` adds the ride's pinged tone."""
    t = _t(dur)
    src = metal_mix * _metal(t, ratio) + (1 - metal_mix) * _noise(rng, t)
    wash = _filter(src, "highpass", cutoff, order=4) * _env(t, decay, attack=0.001)
    ping = np.sin(2 * np.pi * 3200 * ratio * t) * _env(t, 0.25)
    return wash + bell * ping


def shaker(rng, *, attack=0.02, decay=0.05, band=(4000.0, 12000.0), dur=0.25):
    """Shaker/maracas: band-passed noise with a swelling attack (beads travelling)."""
    t = _t(dur)
    return _filter(_noise(rng, t), "bandpass", band) * _env(t, decay, attack=attack)


# ---------------------------------------------------------------------------- digital models

def fm(rng, *, carrier=200.0, ratio=1.5, index=4.0, index_decay=0.05, decay=0.2, pitch_drop=0.0,
       noise_mix=0.0, dur=0.4):
    """Two-operator FM: the modulation index decays faster than the tone (bright attack)."""
    t = _t(dur)
    pitch = np.exp(-t / 0.02) * pitch_drop + 1.0  # pitch_drop > 0: starts higher, falls to carrier
    phase_c = 2 * np.pi * np.cumsum(carrier * pitch) / SR
    phase_m = 2 * np.pi * np.cumsum(carrier * ratio * pitch) / SR
    tone = np.sin(phase_c + index * _env(t, index_decay) * np.sin(phase_m))
    out = tone * _env(t, decay)
    if noise_mix:
        out += noise_mix * _filter(_noise(rng, t), "highpass", 2000) * _env(t, decay * 0.7)
    return out


def zap(rng, *, f_start=3000.0, f_end=80.0, tau=0.03, decay=0.12, dur=0.3):
    """Laser/zap percussion: a square-ish fast downward sweep."""
    t = _t(dur)
    return np.tanh(3 * np.sin(_sweep(t, f_start, f_end, tau))) * _env(t, decay)


# ---------------------------------------------------------------------------- effects

def crush(x: np.ndarray, bits: int = 8, hold: int = 1) -> np.ndarray:
    """Bit-crusher: quantise to `bits` and sample-and-hold every `hold` samples."""
    held = np.repeat(x[::hold], hold)[: x.size]
    levels = 2 ** (bits - 1)
    return np.round(held * levels) / levels


def _apply(x: np.ndarray, fx: dict) -> np.ndarray:
    if "drive" in fx:
        x = np.tanh(fx["drive"] * x / (np.max(np.abs(x)) + 1e-12))
    if "crush" in fx:
        x = crush(x / (np.max(np.abs(x)) + 1e-12), *fx["crush"])
    if "lowpass" in fx:
        x = _filter(x, "lowpass", fx["lowpass"])
    return x


def finish(x: np.ndarray) -> np.ndarray:
    """Remove DC, fade out, peak-normalise to PEAK_DBFS; float32 ready for 16-bit WAV."""
    x = signal.sosfilt(signal.butter(1, 15, "highpass", fs=SR, output="sos"), x)  # DC blocker
    x = x[: int(MAX_SECONDS * SR)]
    fade = min(int(FADE_S * SR), x.size)
    x[x.size - fade:] *= np.linspace(1.0, 0.0, fade)
    x[:16] *= np.linspace(0.0, 1.0, 16)  # no step at the start either
    return (x * 10 ** (PEAK_DBFS / 20) / np.max(np.abs(x))).astype(np.float32)


# ---------------------------------------------------------------------------- kit tables

Variant = tuple[str, str, Callable[..., np.ndarray], dict, dict]

ANALOG: list[Variant] = [
    ("kick_01", "kick", kick, dict(), {}),
    ("kick_02", "kick", kick, dict(f_start=200, f_end=45, decay=0.45, click=0.1, dur=1.0), {}),
    ("kick_03", "kick", kick, dict(f_start=260, f_end=60, pitch_tau=0.015, decay=0.15, click=0.6,
                                   drive=3.0, dur=0.4), {}),
    ("kick_04", "kick", kick, dict(f_start=120, f_end=42, pitch_tau=0.05, decay=0.35, click=0.05,
                                   dur=0.8), {}),
    ("snare_01", "snare", snare, dict(), {}),
    ("snare_02", "snare", snare, dict(tone_hz=(220, 400), noise_decay=0.2, noise_mix=0.75, dur=0.5), {}),
    ("snare_03", "snare", snare, dict(tone_hz=(160, 290), tone_decay=0.09, noise_mix=0.4,
                                      noise_hp=800, dur=0.35), {}),
    ("clap_01", "clap", clap, dict(), {}),
    ("clap_02", "clap", clap, dict(bursts=3, spacing=0.015, tail=0.2, band=(700, 1800), dur=0.6), {}),
    ("rim_01", "rim", rim, dict(), {}),
    ("rim_02", "rim", rim, dict(freq=1200, decay=0.02, click=0.8), {}),
    ("closed_hat_01", "closed_hat", hat, dict(), {}),
    ("closed_hat_02", "closed_hat", hat, dict(decay=0.025, cutoff=9000, metal_mix=0.2, dur=0.12), {}),
    ("closed_hat_03", "closed_hat", hat, dict(decay=0.06, metal_mix=0.8, ratio=1.2), {}),
    ("open_hat_01", "open_hat", hat, dict(decay=0.22, dur=0.8), {}),
    ("open_hat_02", "open_hat", hat, dict(decay=0.35, cutoff=8000, metal_mix=0.3, dur=1.0), {}),
    ("tom_low_01", "tom_low", tom, dict(f_start=110, f_end=80, decay=0.25, dur=0.6), {}),
    ("tom_mid_01", "tom_mid", tom, dict(f_start=160, f_end=120), {}),
    ("tom_high_01", "tom_high", tom, dict(f_start=230, f_end=175, decay=0.16, dur=0.4), {}),
    ("cowbell_01", "cowbell", cowbell, dict(), {}),
    ("cowbell_02", "cowbell", cowbell, dict(f1=587, f2=845, decay=0.2, dur=0.45), {}),
    ("clave_01", "clave", clave, dict(), {}),
    ("conga_01", "conga", conga, dict(freq=220, decay=0.16), {}),
    ("conga_02", "conga", conga, dict(freq=330), {}),
    ("conga_03", "conga", conga, dict(freq=440, decay=0.09, dur=0.25), {}),
    ("crash_01", "crash", cymbal, dict(), {}),
    ("ride_01", "ride", cymbal, dict(decay=0.35, cutoff=6000, metal_mix=0.8, ratio=1.3, bell=0.25,
                                     dur=1.2), {}),
    ("shaker_01", "shaker", shaker, dict(), {}),
    ("shaker_02", "shaker", shaker, dict(attack=0.035, decay=0.04, band=(3000, 9000), dur=0.2), {}),
]

DIGITAL: list[Variant] = [
    ("kick_01", "kick", fm, dict(carrier=55, ratio=1.0, index=3.0, index_decay=0.02, decay=0.25,
                                 pitch_drop=3.0, dur=0.6), {}),
    ("kick_02", "kick", fm, dict(carrier=48, ratio=0.5, index=5.0, index_decay=0.01, decay=0.35,
                                 pitch_drop=4.0, dur=0.8), {"drive": 4.0}),
    ("kick_03", "kick", kick, dict(f_start=300, f_end=55, pitch_tau=0.02, decay=0.2, dur=0.5),
     {"crush": (6, 4)}),
    ("kick_04", "kick", fm, dict(carrier=62, ratio=2.0, index=2.0, index_decay=0.015, decay=0.18,
                                 pitch_drop=2.0, dur=0.45), {"crush": (8, 2)}),
    ("snare_01", "snare", fm, dict(carrier=190, ratio=2.76, index=8.0, index_decay=0.04, decay=0.12,
                                   noise_mix=0.7), {}),
    ("snare_02", "snare", snare, dict(tone_hz=(200, 360), noise_mix=0.7), {"crush": (5, 3)}),
    ("snare_03", "snare", fm, dict(carrier=240, ratio=3.41, index=12.0, index_decay=0.03, decay=0.08,
                                   noise_mix=1.0, dur=0.3), {"drive": 3.0}),
    ("clap_01", "clap", clap, dict(bursts=5, spacing=0.008, tail=0.1), {"crush": (6, 2)}),
    ("clap_02", "clap", clap, dict(bursts=3, spacing=0.02, tail=0.08, band=(1200, 3000), dur=0.35),
     {"drive": 5.0}),
    ("rim_01", "rim", fm, dict(carrier=1500, ratio=1.41, index=3.0, index_decay=0.005, decay=0.015,
                               dur=0.1), {}),
    ("closed_hat_01", "closed_hat", fm, dict(carrier=3100, ratio=1.47, index=10.0, index_decay=0.1,
                                             decay=0.03, noise_mix=0.5, dur=0.12), {}),
    ("closed_hat_02", "closed_hat", hat, dict(decay=0.03, metal_mix=0.1, dur=0.12), {"crush": (4, 6)}),
    ("closed_hat_03", "closed_hat", fm, dict(carrier=5200, ratio=2.39, index=6.0, index_decay=0.1,
                                             decay=0.02, noise_mix=0.3, dur=0.1), {"crush": (8, 3)}),
    ("open_hat_01", "open_hat", fm, dict(carrier=3100, ratio=1.47, index=10.0, index_decay=0.5,
                                         decay=0.25, noise_mix=0.5, dur=0.8), {}),
    ("open_hat_02", "open_hat", hat, dict(decay=0.3, metal_mix=0.6, ratio=1.5, dur=0.9), {"crush": (6, 2)}),
    ("tom_low_01", "tom_low", fm, dict(carrier=90, ratio=1.0, index=1.5, index_decay=0.03, decay=0.25,
                                       pitch_drop=0.6, dur=0.6), {}),
    ("tom_mid_01", "tom_mid", fm, dict(carrier=135, ratio=1.0, index=1.5, index_decay=0.03, decay=0.2,
                                       pitch_drop=0.6, dur=0.5), {}),
    ("tom_high_01", "tom_high", fm, dict(carrier=190, ratio=1.0, index=1.5, index_decay=0.03, decay=0.16,
                                         pitch_drop=0.6, dur=0.4), {}),
    ("cowbell_01", "cowbell", fm, dict(carrier=560, ratio=1.43, index=2.5, index_decay=0.08, decay=0.1,
                                       dur=0.35), {}),
    ("cowbell_02", "cowbell", cowbell, dict(f1=620, f2=910), {"crush": (5, 4)}),
    ("clave_01", "clave", fm, dict(carrier=2000, ratio=3.0, index=1.0, index_decay=0.01, decay=0.025,
                                   dur=0.12), {}),
    ("conga_01", "conga", fm, dict(carrier=280, ratio=1.5, index=1.2, index_decay=0.02, decay=0.12,
                                   pitch_drop=0.2, dur=0.35), {}),
    ("crash_01", "crash", cymbal, dict(decay=0.5, metal_mix=0.3, ratio=1.6), {"crush": (6, 3)}),
    ("ride_01", "ride", fm, dict(carrier=4300, ratio=1.41, index=4.0, index_decay=0.6, decay=0.4,
                                 noise_mix=0.4, dur=1.2), {}),
    ("shaker_01", "shaker", shaker, dict(attack=0.015, decay=0.04), {"crush": (6, 2)}),
    ("perc_01", "perc", zap, dict(), {}),
    ("perc_02", "perc", zap, dict(f_start=6000, f_end=300, tau=0.01, decay=0.06, dur=0.15), {}),
    ("perc_03", "perc", fm, dict(carrier=880, ratio=7.0, index=6.0, index_decay=0.02, decay=0.08,
                                 dur=0.2), {"crush": (4, 1)}),
]

KITS: dict[str, tuple[str, list[Variant]]] = {
    DEFAULT_KIT: ("DeepDrummer analog (808/909-style models)", ANALOG),
    "dd-digital": ("DeepDrummer digital (FM and bit-crushed)", DIGITAL),
}


# ---------------------------------------------------------------------------- rendering

def render(kit: str, variant: Variant) -> np.ndarray:
    """One finished one-shot; the seed depends only on the kit and file name."""
    stem, _role, instrument, params, fx = variant
    rng = np.random.default_rng(zlib.crc32(f"{kit}/{stem}".encode()))
    return finish(_apply(instrument(rng, **params), fx))


def _manifest(kit: str, title: str, variants: list[Variant]) -> str:
    lines = [f'name = "{kit}"', f'description = "{title}"',
             'license = "CC0-1.0 (synthesized by deepdrummer_live.sound.synth)"', ""]
    for stem, role, *_ in variants:
        lines += ["[[sample]]", f'file = "{stem}.wav"', f'role = "{role}"', f"note = {GM_NOTES[role]}", ""]
    return "\n".join(lines)


def build_kits(dest: Path, progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Render every built-in kit under `dest`; returns the kit folders.

    Stale .wav files in those folders (from an older table) are removed, so a kit folder is
    exactly its table. `progress(done, total, "kit/file.wav")` is called after each file.
    """
    dest = Path(dest)
    total = sum(len(v) for _, v in KITS.values())
    done = 0
    folders = []
    for kit, (title, variants) in KITS.items():
        folder = dest / kit
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {f"{stem}.wav" for stem, *_ in variants}
        for old in folder.glob("*.wav"):
            if old.name not in wanted:
                old.unlink()
        for variant in variants:
            name = f"{variant[0]}.wav"
            sf.write(folder / name, render(kit, variant), SR, subtype="PCM_16")
            done += 1
            if progress is not None:
                progress(done, total, f"{kit}/{name}")
        # kit.toml last: its presence means the kit is complete
        (folder / "kit.toml").write_text(_manifest(kit, title, variants), encoding="utf-8")
        folders.append(folder)
    return folders
