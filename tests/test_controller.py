"""Controller mapping files: the shipped ones load, messages map to actions, bad files explain."""

import pytest

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player import controller as ctl

SHIPPED = ["generic", "akai-mpd218", "novation-launchpad", "korg-nanokontrol2", "ableton-live"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_mappings_load(name):
    m = ctl.load_mapping(name)
    actions = {b.action for b in m.bindings}
    assert {"like", "dislike", "next"} <= actions
    assert m.path.name == f"{name}.toml"


def test_generic_notes_and_ccs():
    m = ctl.load_mapping("generic")
    assert m.handle([0x99, 36, 100]) == {"type": "control", "action": "like", "value": None}
    assert m.handle([0x90, 37, 1]) == {"type": "control", "action": "dislike", "value": None}
    assert m.handle([0x99, 36, 0]) is None  # note-on velocity 0 is a release
    assert m.handle([0x89, 36, 0]) is None
    assert m.handle([0x99, 40, 90])["value"] == "cycle"
    assert m.handle([0xB0, 20, 0])["value"] == 20.0
    assert m.handle([0xB3, 20, 127])["value"] == 300.0
    m.tempo_hint = 120.0
    assert m.handle([0x99, 46, 100])["value"] == 121.0
    assert m.handle([0x99, 46, 100])["value"] == 122.0  # steps accumulate before the round trip
    assert m.handle([0xB0, 21, 100]) == {"type": "control", "action": "fotf", "value": 1}
    assert m.handle([0xB0, 21, 110]) is None  # still on
    assert m.handle([0xB0, 21, 10])["value"] == 0


def test_cc_buttons_trigger_on_press_only():
    m = ctl.load_mapping("korg-nanokontrol2")
    assert m.handle([0xB0, 41, 127])["action"] == "play"
    assert m.handle([0xB0, 41, 0]) is None
    assert m.handle([0xB1, 41, 127]) is None  # wrong channel
    assert m.handle([0xB0, 41, 127])["action"] == "play"


def test_channel_filter_mpd218():
    m = ctl.load_mapping("akai-mpd218")
    assert m.handle([0x99, 36, 100])["action"] == "like"
    assert m.handle([0x90, 36, 100]) is None
    assert m.handle([0x99, 41, 100]) == {"type": "control", "action": "mode", "value": "good"}


def test_junk_is_counted_not_fatal():
    m = ctl.load_mapping("generic")
    for junk in ([0xF0, 1, 2, 3, 0xF7], [0x99], [], [0xE0, 0, 64], [0x99, 99, 100], [0xFE]):
        assert m.handle(junk) is None
    assert m.ignored == 6


@pytest.mark.parametrize("text,match", [
    ('[[note]]\nnote = 36\naction = "lik"\n', r"\[\[note\]\] #1: action 'lik' is unknown; use one of like"),
    ('[[note]]\nnote = 200\naction = "like"\n', r"\[\[note\]\] #1: note 200 is invalid; use 0..127"),
    ('[[cc]]\ncc = 1\nchannel = 17\naction = "like"\n', r"channel 17 is invalid; use 1..16"),
    ('[[note]]\nnote = 1\naction = "tempo"\nvalue = "absolute"\n', r"needs a \[\[cc\]\] entry"),
    ('[[note]]\nnote = 1\naction = "mode"\nvalue = "loud"\n', r"mode value 'loud' is unknown"),
    ('[[note]]\nnote = 1\naction = "like"\n[[note]]\nnote = 1\naction = "next"\n',
     r"#2 maps note 1 on the same channel as \[\[note\]\] #1"),
    ('[[note]]\nnote = 1\naction = "like"\nvelocity = 3\n', r"unknown key\(s\) velocity"),
    ('notes = 3\n', r"unknown key 'notes'"),
    ('[[note]\n', r"not valid TOML"),
])
def test_bad_files_name_file_entry_and_fix(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=match) as info:
        ctl.load_mapping(str(path))
    assert str(path) in str(info.value)


def test_unknown_name_lists_choices():
    with pytest.raises(UsageError, match="no such mapping file or name; .*akai-mpd218"):
        ctl.load_mapping("no-such-controller")


def test_ableton_mapping_on_channel_16_with_row_locks():
    m = ctl.load_mapping("ableton-live")
    assert m.handle([0x9F, 36, 100])["action"] == "like"
    assert m.handle([0x90, 36, 100]) is None  # drum notes on other channels are not commands
    assert m.handle([0x9F, 45, 100]) == {"type": "control", "action": "lock", "value": 1}
