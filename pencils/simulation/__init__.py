"""Finite-size ground truth: the original problems, drawn and trained exactly at finite d."""
