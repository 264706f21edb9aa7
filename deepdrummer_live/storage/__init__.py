"""Durable state: the SQLite store and the library files."""
