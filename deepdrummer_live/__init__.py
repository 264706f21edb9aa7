"""DeepDrummer Live: finds drum loops a performer likes, live (OSC/MIDI bridge)."""

__version__ = "0.1.0"
