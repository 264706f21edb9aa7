"""The built-in synthesized kits: shape of each one-shot, determinism, coverage."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepdrummer_live.paths import builtin_kits_dir
from deepdrummer_live.sound import synth
from deepdrummer_live.sound.kit import DEFAULT_KIT, GM_NOTES, load_kit


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("kits")
    calls = []
    folders = synth.build_kits(dest, progress=lambda done, total, name: calls.append((done, total, name)))
    total = sum(len(v) for _, v in synth.KITS.values())
    assert folders == [dest / name for name in synth.KITS]
    assert [c[0] for c in calls] == list(range(1, total + 1)) and {c[1] for c in calls} == {total}
    assert calls[0][2] == f"{DEFAULT_KIT}/{synth.ANALOG[0][0]}.wav"
    return dest


def test_build_is_byte_identical_across_runs(built, tmp_path):
    again = synth.build_kits(tmp_path / "again")
    assert _files(built) == _files(tmp_path / "again")
    assert len(_files(built)) == sum(len(v) + 1 for _, v in synth.KITS.values())  # wavs + kit.toml each
    assert [p.name for p in again] == list(synth.KITS)


def test_shipped_kits_match_a_fresh_build(built):
    """The shipped kits are what build_kits() makes; rebuild them with `make kits`."""
    for name in synth.KITS:
        assert _files(builtin_kits_dir() / name) == _files(built / name), f"data/kits/{name} is stale: make kits"


def test_at_least_48_one_shots_and_8_gm_roles(built):
    roles, count = set(), 0
    for name in synth.KITS:
        kit = load_kit(built / name)
        assert kit.notes == []
        count += len(kit)
        roles |= set(kit.roles)
    assert count >= 48
    assert len(roles) >= 8 and roles <= set(GM_NOTES)
    assert {"kick", "snare", "clap", "closed_hat", "open_hat", "rim", "cowbell", "crash"} <= roles


@pytest.mark.parametrize("kit_name", list(synth.KITS))
def test_every_one_shot_is_short_normalised_faded_and_dc_free(built, kit_name):
    durations = []
    for wav in sorted((built / kit_name).glob("*.wav")):
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16"), wav.name
        x, _ = sf.read(str(wav))
        durations.append(x.size / 44100)
        assert x.size / 44100 <= synth.MAX_SECONDS, wav.name
        peak_db = 20 * np.log10(np.abs(x).max())
        assert -1.5 < peak_db <= -0.9, (wav.name, peak_db)
        assert abs(x.mean()) < 2e-3, (wav.name, x.mean())
        assert abs(x[-1]) < 1e-3 and abs(x[0]) < 1e-3, wav.name  # no click at either end
        assert np.abs(x[-20:]).max() < np.abs(x).max() * 0.05, wav.name
    assert np.median(durations) <= 0.6


def test_kit_toml_declares_every_file_with_its_gm_note(built):
    for name, (_title, variants) in synth.KITS.items():
        doc = tomllib.loads((built / name / "kit.toml").read_text())
        assert doc["name"] == name
        declared = {e["file"]: (e["role"], e["note"]) for e in doc["sample"]}
        assert declared == {f"{stem}.wav": (role, GM_NOTES[role]) for stem, role, *_ in variants}
        assert set(declared) == {p.name for p in (built / name).glob("*.wav")}


def test_rebuild_removes_stale_wavs_but_keeps_other_kits(tmp_path):
    synth.build_kits(tmp_path)
    (tmp_path / DEFAULT_KIT / "old_kick.wav").write_bytes(b"stale")
    (tmp_path / "my-kit").mkdir()
    (tmp_path / "my-kit" / "kick.wav").write_bytes(b"mine")
    synth.build_kits(tmp_path)
    assert not (tmp_path / DEFAULT_KIT / "old_kick.wav").exists()
    assert (tmp_path / "my-kit" / "kick.wav").read_bytes() == b"mine"


def test_kits_build_writes_to_the_user_data_dir_not_the_package(tmp_path, monkeypatch, capsys):
    from deepdrummer_live.cli.main import main

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(synth, "KITS", {DEFAULT_KIT: synth.KITS[DEFAULT_KIT]})  # one kit is enough here
    shipped = _files(builtin_kits_dir() / DEFAULT_KIT)
    assert main(["kits", "build"]) == 0
    user_kit = tmp_path / "data" / "deepdrummer-live" / "kits" / DEFAULT_KIT
    assert capsys.readouterr().out.split() == [str(user_kit)]
    assert _files(user_kit) == shipped  # byte-identical to what the package ships
    assert load_kit(DEFAULT_KIT).root == (builtin_kits_dir() / DEFAULT_KIT).resolve()  # built-in first


def test_render_is_a_pure_function_of_kit_and_file_name():
    variant = synth.ANALOG[0]
    a, b = synth.render(DEFAULT_KIT, variant), synth.render(DEFAULT_KIT, variant)
    assert np.array_equal(a, b) and a.dtype == np.float32
    snare = next(v for v in synth.ANALOG if v[1] == "snare")
    assert not np.array_equal(synth.render(DEFAULT_KIT, snare), synth.render("dd-digital", snare))


def test_instruments_have_the_pitch_and_brightness_of_their_role():
    rng = np.random.default_rng(0)

    def centroid(x):
        mag = np.abs(np.fft.rfft(x))
        return (mag * np.fft.rfftfreq(x.size, 1 / synth.SR)).sum() / mag.sum()

    kick, hat = synth.kick(rng), synth.hat(rng)
    assert centroid(kick) < 600 < 5000 < centroid(hat)
    spectrum = np.abs(np.fft.rfft(synth.kick(rng, click=0.0, f_start=50, f_end=50)))
    assert 45 < np.fft.rfftfreq(int(0.6 * synth.SR), 1 / synth.SR)[spectrum.argmax()] < 55
    assert synth.crush(np.linspace(-1, 1, 1000), bits=2, hold=1).round(6).tolist().count(0.0) > 0
    assert len(np.unique(synth.crush(np.linspace(-1, 1, 1000), bits=3, hold=1))) <= 9
