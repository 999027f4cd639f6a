"""Benchmarks behind ``make bench``."""
