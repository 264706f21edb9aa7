"""load_kit on every kind of folder a performer can point --kit at."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepdrummer_live.errors import KitError, UsageError
from deepdrummer_live.paths import builtin_kits_dir
from deepdrummer_live.sound.kit import (
    DEFAULT_KIT,
    GM_NOTES,
    MAX_SAMPLE_SECONDS,
    Kit,
    load_kit,
    resolve_kit_path,
    role_from_name,
)

PAPER_KIT = Path(__file__).resolve().parents[2] / "shared/external-kits/deepdrummer-paper"
needs_paper_kit = pytest.mark.usefixtures("paper_kit")  # fails, never skips, where the kit is missing


def hit(sr: int = 44100, seconds: float = 0.2, channels: int = 1, freq: float = 200.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.05)
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


def write(path: Path, data: np.ndarray | None = None, sr: int = 44100, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), hit(sr) if data is None else data, sr, **kw)
    return path


# ---------------------------------------------------------------------------- role guessing

@pytest.mark.parametrize("name, role", [
    ("Vermona_Kick_02", "kick"), ("kick01rr6", "kick"), ("SR-88_Kick_BassWah03", "kick"),
    ("DR110_Kick_Overdrive", "kick"), ("hhopen", "open_hat"), ("Openhat05", "open_hat"),
    ("DR110_OpenHat_RingMod01", "open_hat"), ("Closedhat05", "closed_hat"), ("hhclosed", "closed_hat"),
    ("Vermona_HiHat_01", "closed_hat"), ("SR-88_Hat_Clean", "closed_hat"), ("FX_Hat01", "closed_hat"),
    ("Rimshot02", "rim"), ("rimshot", "rim"), ("maracas", "shaker"), ("Shaker01", "shaker"),
    ("Snare19", "snare"), ("Vermona_Snare_02", "snare"), ("Clap07", "clap"), ("Vermona_Clap_08", "clap"),
    ("tomhi", "tom_high"), ("tomlo", "tom_low"), ("tommid", "tom_mid"), ("cymbal", "crash"),
    ("DR110_Cymbal_Clean", "crash"), ("cowbell", "cowbell"), ("congalo", "conga"), ("congahi", "conga"),
    ("clave", "clave"), ("Perc10", "perc"), ("Zapp", "perc"), ("Vermona_Misc_09", "perc"),
    ("Ride Bell 2", "ride"), ("808 BD", "kick"), ("open-hat", "open_hat"),
])
def test_role_from_name(name, role):
    assert role_from_name(name) == role


def test_every_role_has_a_gm_drum_note():
    assert all(27 <= note <= 87 for note in GM_NOTES.values())
    assert GM_NOTES["kick"] == 36 and GM_NOTES["snare"] == 38 and GM_NOTES["closed_hat"] == 42


# ---------------------------------------------------------------------------- the paper's kit

@needs_paper_kit
def test_paper_kit_loads_every_one_shot_and_notes_the_junk():
    kit = load_kit(PAPER_KIT)
    assert len(kit) == 292
    assert len(kit.notes) == 3  # .DS_Store and two .nki instrument files
    assert any(".DS_Store" in n for n in kit.notes)
    assert sum(".nki" in n for n in kit.notes) == 2
    assert all(s.audio.ndim == 1 and s.audio.dtype == np.float32 and s.audio.size > 0 for s in kit.samples)
    assert all(s.note == GM_NOTES[s.role] for s in kit.samples)
    roles = Counter(kit.roles)
    assert roles["kick"] > 50 and roles["snare"] > 40 and roles["closed_hat"] > 30
    assert {"open_hat", "clap", "rim", "shaker", "conga", "cowbell", "clave", "crash"} <= set(roles)
    # nested folders and names with spaces keep their relative path as the sample name
    assert "vermona/Vermona_Kick_02" in kit.names
    assert kit.samples[kit.index_of("vermona/Vermona_Kick_02")].role == "kick"


@needs_paper_kit
def test_paper_kit_mixes_bit_depths_and_channel_counts():
    kit = load_kit(PAPER_KIT)
    formats = {(sf.info(str(s.path)).subtype, sf.info(str(s.path)).channels) for s in kit.samples}
    assert {("PCM_16", 1), ("PCM_24", 2)} <= formats
    assert len(kit.audio_at(22050)) == 292


# ---------------------------------------------------------------------------- formats

@pytest.mark.parametrize("suffix, subtype, sr, channels", [
    (".wav", "PCM_16", 44100, 1), (".wav", "PCM_24", 48000, 2), (".wav", "FLOAT", 96000, 1),
    (".wav", "PCM_32", 22050, 2), (".wav", "PCM_U8", 8000, 1), (".aiff", "PCM_16", 44100, 2),
    (".aif", "PCM_24", 32000, 1), (".aiff", "FLOAT", 48000, 1), (".flac", "PCM_16", 44100, 1),
    (".flac", "PCM_24", 88200, 2),
    (".WAV", "DOUBLE", 11025, 1),
])
def test_any_format_rate_and_channel_count_loads_as_float32_mono(tmp_path, suffix, subtype, sr, channels):
    fmt = {".wav": "WAV", ".aiff": "AIFF", ".aif": "AIFF", ".flac": "FLAC"}[suffix.lower()]
    write(tmp_path / f"kick{suffix}", hit(sr, channels=channels), sr, subtype=subtype, format=fmt)
    kit = load_kit(tmp_path)
    (s,) = kit.samples
    assert (s.name, s.role, s.note, s.sr) == ("kick", "kick", 36, sr)
    assert s.audio.dtype == np.float32 and s.audio.ndim == 1 and s.audio.size == int(sr * 0.2)
    assert 0.3 < np.abs(s.audio).max() <= 0.51
    (resampled,) = kit.audio_at(44100)
    assert resampled.dtype == np.float32 and abs(resampled.size - int(44100 * 0.2)) <= 2


def test_nested_folders_names_with_spaces_sorted_by_path(tmp_path):
    write(tmp_path / "b/Open Hat 1.wav")
    write(tmp_path / "a/deep/er/Big Kick.flac")
    write(tmp_path / "snare 01.aiff")
    kit = load_kit(str(tmp_path))
    assert kit.names == ["a/deep/er/Big Kick", "b/Open Hat 1", "snare 01"]
    assert kit.roles == ["kick", "open_hat", "snare"]
    assert kit.notes == []
    assert isinstance(kit, Kit) and kit.root == tmp_path.resolve()


# ---------------------------------------------------------------------------- junk, one note each

def test_junk_files_are_skipped_with_one_note_each(tmp_path):
    write(tmp_path / "kick.wav")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (tmp_path / "Cassette 808.nki").write_bytes(b"NI" + bytes(50))
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "empty.wav").write_bytes(b"")
    write(tmp_path / "header_only.wav", np.zeros((0,)))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunk" + bytes(64))
    (tmp_path / "text.wav").write_text("this is not audio")
    truncated = (tmp_path / "kick.wav").read_bytes()[:30]
    (tmp_path / "truncated.flac").write_bytes(truncated)
    write(tmp_path / "song.wav", np.zeros(int(8000 * (MAX_SAMPLE_SECONDS + 1))) + 0.1, 8000)
    write(tmp_path / "silence.wav", np.zeros(4410))
    write(tmp_path / "nan.wav", np.full(100, np.nan), subtype="FLOAT")

    kit = load_kit(tmp_path)
    assert kit.names == ["kick"]
    skipped = {n.split(":")[0].removeprefix("skipped ").rsplit("/", 1)[-1]: n for n in kit.notes}
    assert sorted(skipped) == sorted([".DS_Store", "Cassette 808.nki", "readme.txt", "empty.wav",
                                      "header_only.wav", "corrupt.wav", "text.wav", "truncated.flac",
                                      "song.wav", "silence.wav", "nan.wav"])
    assert len(kit.notes) == len(skipped)
    assert "0 bytes" in skipped["empty.wav"]
    assert "zero-length" in skipped["header_only.wav"]
    assert f"<= {MAX_SAMPLE_SECONDS:.0f} s" in skipped["song.wav"] and "trim" in skipped["song.wav"]
    assert "silence" in skipped["silence.wav"]
    for note in kit.notes:  # one line, names the file, says what to do, no traceback
        assert "\n" not in note and "Traceback" not in note and ";" in note


def test_unreadable_file_is_a_skip_note(tmp_path, monkeypatch):
    write(tmp_path / "kick.wav")
    locked = write(tmp_path / "snare.wav")
    real_info = sf.info

    def info(path, *a, **kw):  # chmod 0 does not stop root, so deny the read here instead
        if Path(path).name == "snare.wav":
            raise PermissionError(13, "Permission denied", str(path))
        return real_info(path, *a, **kw)

    monkeypatch.setattr("deepdrummer_live.sound.kit.sf.info", info)
    kit = load_kit(tmp_path)
    assert kit.names == ["kick"]
    (note,) = kit.notes
    assert str(locked) in note and "Permission denied" in note and "Traceback" not in note


# ---------------------------------------------------------------------------- KitError cases

def test_empty_folder_is_a_kit_error_naming_the_folder(tmp_path):
    with pytest.raises(KitError) as err:
        load_kit(tmp_path)
    # a plain error naming the folder and the fix; `run` words it with its flag (cli/flags.py)
    assert str(tmp_path) in str(err.value) and "give a folder of drum samples" in str(err.value)
    assert "--kit" not in str(err.value)
    assert isinstance(err.value, UsageError)  # run exits 2


def test_folder_with_only_junk_is_a_kit_error(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"Bud1")
    (tmp_path / "broken.wav").write_bytes(b"nope")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/Kit.nki").write_bytes(b"NI")
    with pytest.raises(KitError, match="no usable one-shots") as err:
        load_kit(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_kit_name_names_the_value_and_lists_built_in_kits(tmp_path):
    with pytest.raises(KitError) as err:
        load_kit("no-such-kit-xyz")
    msg = str(err.value)
    assert "'no-such-kit-xyz'" in msg and DEFAULT_KIT in msg and "dd-digital" in msg


def test_a_file_instead_of_a_folder_says_to_give_the_folder(tmp_path):
    wav = write(tmp_path / "kick.wav")
    with pytest.raises(KitError, match="is a file") as err:
        load_kit(wav)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("toml, expect", [
    ('name = "x"\n[[sample]\nfile = "kick.wav"\n', "not valid TOML"),
    ('[[sample]]\nrole = "kick"\n', "has no file name"),
    ('[[sample]]\nfile = "nope.wav"\nrole = "kick"\n', "'nope.wav' is not in"),
    ('[[sample]]\nfile = "../outside.wav"\n', "is not in"),
    ('[[sample]]\nfile = "kick.wav"\nrole = "bassdrum"\n', "role 'bassdrum'"),
    ('[[sample]]\nfile = "kick.wav"\nnote = 300\n', "note 300"),
    ('[[sample]]\nfile = "kick.wav"\nnote = "36"\n', "note '36'"),
    ('[[sample]]\nfile = "kick.wav"\nnote = true\n', "note True"),
    ('sample = "kick.wav"\n', "list of [[sample]] tables"),
    ('name = 5\n', "name 5"),
])
def test_bad_kit_toml_is_a_kit_error_naming_the_file_and_the_fix(tmp_path, toml, expect):
    write(tmp_path / "kick.wav")
    write(tmp_path.parent / "outside.wav")
    (tmp_path / "kit.toml").write_text(toml)
    with pytest.raises(KitError) as err:
        load_kit(tmp_path)
    msg = str(err.value)
    assert expect in msg and str(tmp_path / "kit.toml") in msg
    assert any(w in msg for w in ("fix", "add", "use", "write")), msg


def test_non_utf8_kit_toml_is_a_kit_error(tmp_path):
    write(tmp_path / "kick.wav")
    (tmp_path / "kit.toml").write_bytes(b'name = "\xff\xfe"\n')
    with pytest.raises(KitError, match="kit.toml: not valid TOML"):
        load_kit(tmp_path)


# ---------------------------------------------------------------------------- kit.toml honoured

def test_kit_toml_roles_and_notes_override_name_guessing(tmp_path):
    write(tmp_path / "a.wav")
    write(tmp_path / "b.wav")
    write(tmp_path / "sub/kick.wav")
    write(tmp_path / "hat.wav")
    (tmp_path / "kit.toml").write_text(
        'name = "mine"\n'
        '[[sample]]\nfile = "a.wav"\nrole = "cowbell"\n'
        '[[sample]]\nfile = "b.wav"\nrole = "snare"\nnote = 40\n'
        '[[sample]]\nfile = "sub/kick.wav"\nrole = "clap"\n')
    kit = load_kit(tmp_path)
    got = {s.name: (s.role, s.note) for s in kit.samples}
    assert got == {"a": ("cowbell", 56), "b": ("snare", 40), "sub/kick": ("clap", 39),
                   "hat": ("closed_hat", 42)}  # not in kit.toml: guessed from its name
    assert kit.notes == []


def test_shipped_kits_load_by_name_with_their_declared_roles():
    for name in (DEFAULT_KIT, "dd-digital"):
        kit = load_kit(name)
        assert kit.root == (builtin_kits_dir() / name).resolve() and kit.notes == []
        assert all(s.note == GM_NOTES[s.role] for s in kit.samples)
        # the file names are the role names, so guessing and declaring agree
        assert all(s.role == s.name.rsplit("_", 1)[0] for s in kit.samples)
    assert resolve_kit_path(None) == (builtin_kits_dir() / DEFAULT_KIT).resolve()
    assert len(load_kit()) == len(load_kit(DEFAULT_KIT))
