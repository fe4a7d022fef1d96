"""What restate knows about a dbt project: each model's meta.restate contract, read from
the manifest, and the lineage to the dashboards."""
