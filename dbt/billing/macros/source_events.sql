{#- Raw landing events with their file lineage as source_file / source_row_number.
    DuckDB reads the view raw.events over the accepted landing files (local or s3://
    via fsspec; restate/ingest/landing.py) and gets both from read_parquet(); Snowflake's landing table stores METADATA$FILENAME and
    METADATA$FILE_ROW_NUMBER at COPY time under the same names. Both give the row's
    processing time as landing_processed_at (on DuckDB the landing view computes it,
    values that do not parse counting as missing). -#}
{% macro raw_events() -%}
    {{ return(adapter.dispatch('raw_events', 'restate_billing')()) }}
{%- endmacro %}

{% macro default__raw_events() -%}
    select *, coalesce(event_ingested_at, event_ts) as landing_processed_at
    from {{ source('billing', 'events') }}
{%- endmacro %}

{% macro duckdb__raw_events() -%}
    select * rename (filename as source_file, file_row_number as source_row_number)
    from {{ source('billing', 'events') }}
{%- endmacro %}
