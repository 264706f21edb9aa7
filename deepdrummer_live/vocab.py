"""Words every part of DeepDrummer Live shares: tempo range, modes, clocks, grid size, GM drum notes.

Defined once, here; this module imports nothing, so the player process, `send` and the web page's
server can use it without pulling in torch.
"""

from __future__ import annotations

TEMPO_MIN = 20.0  # BPM, contract: /dd/tempo 20-300
TEMPO_MAX = 300.0
DEFAULT_TEMPO = 120.0

MIDI_OFFSET_MS_MAX = 500.0  # MIDI out moved by -500 to 500 ms (the DAW's reported latency)

MODES = ("explore", "good", "bad", "random")  # the paper's generate / sample good / sample bad / random
CLOCKS = ("internal", "midi", "link")
MIDI_BACKENDS = ("alsa", "jack", "coremidi", "winmm", "none")
AUDIO_BACKENDS = ("jack", "portaudio", "offline")
AUDIO_MODES = ("pyo", "none")  # live audio from the player process, or none
# The critics (learn/kinds.py): the default reads the loop; the others hear the rendered mix
CRITIC_KINDS = ("grid", "lean-hearing", "paper")

N_ROWS = 4
DENSITY_MIN = 0.05  # the generator's prior probability of a hit; the paper's is 0.5
DENSITY_MAX = 0.95
SWING_MIN = 0.0  # odd 16ths late by this x one step (contract: /dd/swing 0.0-0.5)
SWING_MAX = 0.5

N_STEPS = 16  # one bar of 16ths in 4/4 (the paper's loop)
STEPS_PER_BEAT = 4  # 16ths per quarter note: MIDI clock is 24 per quarter, 6 per step, in every meter

# The shape of a loop (contract v1.2): rows x bars of a meter. Steps are 16ths in every meter.
MAX_ROWS = 8
ROWS_RANGE = (1, MAX_ROWS)
BARS = (1, 2, 4)  # a loop of more than one bar is a phrase
DEFAULT_METER = "4/4"
# meter -> (16ths per bar, the beats' steps within a bar, the strong beats' steps). In 6/8 the beats
# are dotted quarters (steps 0 and 6); 7/8 is grouped 2+2+3 eighths, 5/4 as 3+2 quarters.
METERS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "4/4": (16, (0, 4, 8, 12), (0, 8)),
    "3/4": (12, (0, 4, 8), (0,)),
    "6/8": (12, (0, 6), (0,)),
    "5/4": (20, (0, 4, 8, 12, 16), (0, 12)),
    "7/8": (14, (0, 4, 8), (0,)),
}
SWITCH_POINTS = ("phrase", "bar")  # while playing, a new loop starts at the phrase's end (default) or a bar line
MAX_STEPS = max(spb for spb, _, _ in METERS.values()) * max(BARS)


def steps_per_bar(meter: str) -> int:
    return METERS[meter][0]


def metric_classes(meter: str, n_steps: int) -> list[int]:
    """The metric position of every step of a loop of `n_steps` in `meter`: 0 a strong beat (the one),
    1 another beat, 2 an 8th between beats, 3 a 16th between 8ths. What the critic, the generator's
    four-on-the-floor and the simulated users call "on the beat" and "between"."""
    spb, beats, strong = METERS[meter]
    out = []
    for step in range(n_steps):
        pos = step % spb
        out.append(0 if pos in strong else 1 if pos in beats else 2 if pos % 2 == 0 else 3)
    return out


def shape_problem(rows=None, bars=None, meter=None) -> str | None:
    """What is wrong with a loop shape (a sentence naming the value, the range and the fix), or None.
    Every surface that takes a shape (the command table, run's flags, the dataset) asks this."""
    if rows is not None and not (isinstance(rows, int) and ROWS_RANGE[0] <= rows <= ROWS_RANGE[1]):
        return f"rows {rows!r} out of range; use {ROWS_RANGE[0]}-{ROWS_RANGE[1]}"
    if bars is not None and bars not in BARS:
        return f"bars {bars!r} not allowed; use one of {', '.join(map(str, BARS))}"
    if meter is not None and meter not in METERS:
        return f"meter {meter!r} unknown; use one of {', '.join(METERS)}"
    return None

# What a pad can learn with /dd/learn (player/midilearn.py), with the value its binding carries
# (player/controller.py); lock needs a row.
LEARNABLE_ACTIONS: dict[str, str | None] = {
    "like": None, "dislike": None, "next": None, "undo": None, "save": None, "play": None, "stop": None,
    "mode": "cycle", "fotf": "toggle", "lock": "row",
}

OSC_PORT = 9000  # the daemon's OSC port (contract)
OSC_HOST = "127.0.0.1"
WEB_PORT = 9080  # the rating page (contract v1.1); 0 turns it off
WEB_HOST = "127.0.0.1"

DRUM_CHANNEL = 9  # MIDI channel 10, zero-based
INT32_MAX = 2**31 - 1  # an OSC integer
INT32_MIN = -(2**31)

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


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_tempo(tempo) -> float:
    """The tempo in BPM as a float; ValueError naming the value, the range and the fix.
    The one tempo check: the command table, run's flags, the session and the player process call it."""
    value = _number(tempo)
    if value is None:
        raise ValueError(f"tempo {tempo!r} is not a number; use {TEMPO_MIN:g}-{TEMPO_MAX:g} BPM")
    if not TEMPO_MIN <= value <= TEMPO_MAX:  # nan fails too
        raise ValueError(f"tempo {value:g} BPM out of range; use {TEMPO_MIN:g}-{TEMPO_MAX:g}")
    return value


def check_midi_offset(ms) -> float:
    """The MIDI output offset in ms as a float; ValueError naming the value, the range and the fix."""
    value = _number(ms)
    if value is None or not -MIDI_OFFSET_MS_MAX <= value <= MIDI_OFFSET_MS_MAX:  # nan fails too
        raise ValueError(f"MIDI offset {ms!r} ms out of range; use {-MIDI_OFFSET_MS_MAX:g} to "
                         f"{MIDI_OFFSET_MS_MAX:g} (the DAW's reported latency in ms)")
    return value


def check_clock(clock) -> str:
    """A clock source's name; ValueError naming it and the choices."""
    if clock not in CLOCKS:
        raise ValueError(f"clock {clock!r} unknown; use one of {'/'.join(CLOCKS)}")
    return clock


def swing_problem(amount) -> str | None:
    """What is wrong with a swing amount (a sentence naming it, the range and the fix), or None.
    Every surface that takes swing (the command table, --swing, the player process) asks this."""
    number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
    if number and SWING_MIN <= amount <= SWING_MAX:
        return None
    shown = f"{amount:g}" if number else repr(amount)
    return f"swing {shown} out of range; use {SWING_MIN:g}-{SWING_MAX:g} (0 straight, 0.333 triplet feel)"


def sureness(z: float) -> str:
    """A learnt fact's weight over its standard error (the taste map), in words: how sure the critic is."""
    return "sure" if abs(z) >= 2 else "leaning" if abs(z) >= 1 else "a hint"

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
