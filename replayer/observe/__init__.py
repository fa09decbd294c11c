"""Watching a run: logs, statistics, progress, Prometheus, thresholds."""
