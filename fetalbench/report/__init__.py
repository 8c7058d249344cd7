"""The reporting stage: records to a table, statistics over seeds and cells, figures and
``leaderboard.md``. Nothing here imports torch."""
