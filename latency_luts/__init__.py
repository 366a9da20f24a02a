"""Latency lookup tables as data: one JSON file per device (see README.md in this folder)."""
