"""Benchmarks (`qkdnet bench NAME`): each measures against a baseline taken in the same run and records its section of docs/benchmarks.md."""
