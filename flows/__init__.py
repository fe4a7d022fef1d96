"""Thin Prefect flows, one per file."""
