"""Reliability tests: crashes, disk full, hostile input, HipChat misbehaving."""
