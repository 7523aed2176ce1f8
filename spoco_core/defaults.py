"""Defaults that the app's pages read without importing torch (the Train page loads in a blink)."""

DEFAULT_TRAIN_MINUTES = 3.0
"""The app's default training budget, sized for 2 CPU cores (benchmarks/real_nuclei.py measures
what it gives); a GPU makes more steps in the same time."""
