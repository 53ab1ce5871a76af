"""Formats and pure state machines: no side effects beyond reading and appending files."""
