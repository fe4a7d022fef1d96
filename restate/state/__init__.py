"""restate's own state in the warehouse: the meta schema, the audit changelog, locks,
segregation of duties, status."""
