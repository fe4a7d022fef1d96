"""Partition work on the warehouse: recompute chunks into an isolated schema; promote them
atomically (with archive) and roll back."""
