"""Proof before cutover: Soda contracts, the finance reference exports, the metric diff,
the nightly reconciliation and its root-cause split."""
