"""Benchmarks: sampling speed (python -m playground.bench), training speed, browser, load."""
