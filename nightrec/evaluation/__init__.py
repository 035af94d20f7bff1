"""Evaluation: ranking held-out targets and turning ranks into metrics."""
