"""Sounds: kits, synthesized kits, loop patterns and the one mix definition."""
