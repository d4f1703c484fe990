"""Helpers behind the test fixtures: real processes (registry, containerd, crishim) and real tools."""
