"""Peer implementations in other frameworks, for side-by-side speed benchmarks (optional installs)."""
