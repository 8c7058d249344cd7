"""Benchmark suites, the grid that runs them, and the leaderboard built from their run records."""
