"""The evidence of one restatement in one place: what was asked, planned, checked,
approved and recorded (collect), written as an auditor's pack with a manifest of
SHA-256 sums and checked offline (pack)."""

from restate.evidence.collect import Evidence, collect_evidence
from restate.evidence.pack import PackProblem, verify_pack, write_pack

__all__ = ["Evidence", "PackProblem", "collect_evidence", "verify_pack", "write_pack"]
