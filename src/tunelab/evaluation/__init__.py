"""Evaluation: metrics and (later) suites, robustness, fairness, human ratings."""
