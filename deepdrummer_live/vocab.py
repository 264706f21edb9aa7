"""Words every part of DeepDrummer Live shares: tempo range, modes, clocks, grid size, GM drum notes.

Defined once, here; this module imports nothing, so the player process, `send` and the web page's
server can use it without pulling in torch.
"""

from __future__ import annotations

TEMPO_MIN = 20.0  # BPM, contract: /dd/tempo 20-300
TEMPO_MAX = 300.0
DEFAULT_TEMPO = 120.0

MODES = ("explore", "good", "bad", "random")  # the paper's generate / sample good / sample bad / random
CLOCKS = ("internal", "midi", "link")
MIDI_BACKENDS = ("alsa", "jack", "coremidi", "winmm", "none")
AUDIO_BACKENDS = ("jack", "portaudio", "offline")

N_ROWS = 4
DENSITY_MIN = 0.05  # the generator's prior probability of a hit; the paper's is 0.5
DENSITY_MAX = 0.95
SWING_MIN = 0.0  # odd 16ths late by this x one step (contract: /dd/swing 0.0-0.5)
SWING_MAX = 0.5

N_STEPS = 16  # one bar of 16ths
STEPS_PER_BEAT = 4

# What a pad can learn with /dd/learn (player/midilearn.py); lock needs a row.
LEARNABLE_ACTIONS = ("like", "dislike", "next", "undo", "save", "play", "stop", "mode", "fotf", "lock")

WEB_PORT = 9080  # the rating page (contract v1.1); 0 turns it off
WEB_HOST = "127.0.0.1"

DRUM_CHANNEL = 9  # MIDI channel 10, zero-based
INT32_MAX = 2**31 - 1

# Role -> General MIDI drum note (channel 10).
GM_NOTES: dict[str, int] = {
    "kick": 36,
    "rim": 37,
    "snare": 38,
    "clap": 39,
    "closed_hat": 42,
    "pedal_hat": 44,
    "tom_low": 45,
    "open_hat": 46,
    "tom_mid": 47,
    "crash": 49,
    "tom_high": 50,
    "ride": 51,
    "tambourine": 54,
    "cowbell": 56,
    "conga": 63,
    "shaker": 70,
    "clave": 75,
    "perc": 76,
}


def check_tempo_range(bpm: float) -> bool:
    return TEMPO_MIN <= bpm <= TEMPO_MAX


def swing_problem(amount) -> str | None:
    """What is wrong with a swing amount (a sentence naming it, the range and the fix), or None.
    Every surface that takes swing (the command table, --swing, the player process) asks this."""
    number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
    if number and SWING_MIN <= amount <= SWING_MAX:
        return None
    shown = f"{amount:g}" if number else repr(amount)
    return f"swing {shown} out of range; use {SWING_MIN:g}-{SWING_MAX:g} (0 straight, 0.333 triplet feel)"


DEFAULT_PROFILE = "default"  # the taste profile of a state dir from before profiles, and of `run` without --profile
PROFILE_NAME_MAX = 32
_PROFILE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def profile_problem(name) -> str | None:
    """What is wrong with a taste profile's name (a sentence naming it, the rule and the fix), or None.
    The name is also a folder of the state dir (profiles/<name>/), so the rule keeps it a plain one."""
    if isinstance(name, str) and 1 <= len(name) <= PROFILE_NAME_MAX and set(name) <= _PROFILE_CHARS:
        return None
    return (f"profile name {name!r:.60} is not allowed; use 1-{PROFILE_NAME_MAX} of letters, digits, - and _ "
            f"(e.g. verse, chorus_2)")
