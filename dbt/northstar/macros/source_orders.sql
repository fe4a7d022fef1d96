{#- Raw landed order versions with their file lineage as source_file / source_row_number.
    DuckDB reads the view raw.orders over the accepted landing files and gets both from
    read_parquet(), plus the row's processing time as landing_processed_at (computed by
    the view from the landing's processed_at columns). Snowflake's landing table stores
    METADATA$FILENAME and METADATA$FILE_ROW_NUMBER at COPY time under the same names. -#}
{% macro raw_orders() -%}
    {{ return(adapter.dispatch('raw_orders', 'northstar_orders')()) }}
{%- endmacro %}

{% macro default__raw_orders() -%}
    select *, coalesce(order_ingested_at, updated_at) as landing_processed_at
    from {{ source('shop', 'orders') }}
{%- endmacro %}

{% macro duckdb__raw_orders() -%}
    select * rename (filename as source_file, file_row_number as source_row_number)
    from {{ source('shop', 'orders') }}
{%- endmacro %}
