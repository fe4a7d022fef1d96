"""Restatement plans: model closure, partition chunks, code version and cost estimate."""
