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


def ev(command, *args):
    return {"type": "control", "command": command, "args": list(args)}


def test_generic_notes_and_ccs():
    m = ctl.load_mapping("generic")
    assert m.handle([0x99, 36, 100]) == ev("like")
    assert m.handle([0x90, 37, 1]) == ev("dislike")
    assert m.handle([0x99, 36, 0]) is None  # note-on velocity 0 is a release
    assert m.handle([0x89, 36, 0]) is None
    assert m.handle([0x99, 40, 90]) == ev("mode_cycle")
    assert m.handle([0xB0, 20, 0]) == ev("tempo", 20.0)  # a knob spreads over the command's range
    assert m.handle([0xB3, 20, 127]) == ev("tempo", 300.0)
    assert m.handle([0x99, 46, 100]) == ev("tempo_nudge", 1.0)  # the session adds it to its tempo
    assert m.handle([0xB0, 21, 100]) == ev("fotf", 1)
    assert m.handle([0xB0, 21, 110]) is None  # still on
    assert m.handle([0xB0, 21, 10]) == ev("fotf", 0)


def test_cc_buttons_trigger_on_press_only():
    m = ctl.load_mapping("korg-nanokontrol2")
    assert m.handle([0xB0, 41, 127])["command"] == "play"
    assert m.handle([0xB0, 41, 0]) is None
    assert m.handle([0xB1, 41, 127]) is None  # wrong channel
    assert m.handle([0xB0, 41, 127])["command"] == "play"


def test_channel_filter_mpd218():
    m = ctl.load_mapping("akai-mpd218")
    assert m.handle([0x99, 36, 100])["command"] == "like"
    assert m.handle([0x90, 36, 100]) is None
    assert m.handle([0x99, 41, 100]) == ev("mode", "good")


def test_any_command_of_the_table_can_be_mapped(tmp_path):
    """Mappings name commands of the one table; values are checked against it when the file loads."""
    path = tmp_path / "m.toml"
    path.write_text('[[note]]\nnote = 60\naction = "fotf"\nvalue = 1\n'
                    '[[note]]\nnote = 61\naction = "play_toggle"\n'
                    '[[note]]\nnote = 62\naction = "save"\nvalue = "drop one"\n')
    m = ctl.load_mapping(str(path))
    assert m.handle([0x90, 60, 1]) == ev("fotf", 1)
    assert m.handle([0x90, 61, 1]) == ev("play_toggle")
    assert m.handle([0x90, 62, 1]) == ev("save", "drop one")
    path.write_text('[[note]]\nnote = 60\naction = "fotf"\nvalue = 3\n')
    with pytest.raises(UsageError, match=r"#1: /dd/fotf on 3 out of range; use 0-1"):
        ctl.load_mapping(str(path))


def test_junk_is_counted_not_fatal():
    m = ctl.load_mapping("generic")
    for junk in ([0xF0, 1, 2, 3, 0xF7], [0x99], [], [0xE0, 0, 64], [0x99, 99, 100], [0xFE]):
        assert m.handle(junk) is None
    assert m.ignored == 6


@pytest.mark.parametrize("text,match", [
    ('[[note]]\nnote = 36\naction = "lik"\n', r"\[\[note\]\] #1: action 'lik' is unknown; use one of .*\blike\b"),
    ('[[note]]\nnote = 200\naction = "like"\n', r"\[\[note\]\] #1: note 200 is invalid; use 0..127"),
    ('[[cc]]\ncc = 1\nchannel = 17\naction = "like"\n', r"channel 17 is invalid; use 1..16"),
    ('[[note]]\nnote = 1\naction = "tempo"\nvalue = "absolute"\n', r"needs a \[\[cc\]\] entry"),
    ('[[cc]]\ncc = 1\naction = "save"\nvalue = "cc"\n', r"action 'save' cannot follow a CC"),
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
    assert m.handle([0x9F, 36, 100])["command"] == "like"
    assert m.handle([0x90, 36, 100]) is None  # drum notes on other channels are not commands
    assert m.handle([0x9F, 45, 100]) == ev("lock_toggle", 1)  # `action = "lock"`, `value = 1`: row 1
