"""The player process: sequencer, clocks, MIDI, controllers and live audio. No torch here."""
