"""restate: finance-grade restatement of analytics tables."""

__version__ = "0.1.0"
