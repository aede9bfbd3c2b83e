"""Benchmarks (not tests): each module prints a table, and JSON with --json."""
