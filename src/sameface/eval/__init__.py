"""Evaluation: metrics, benchmark suites and runner, statistics and reports."""
