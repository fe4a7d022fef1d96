"""Running the user's dbt project in-process (dbt-core's runner), and handing its warehouse handle back."""
