{#- A landed value as `type`, or null when it does not parse. On DuckDB the landing view
    reads the files as they are, and files may disagree (an amount written as text in one
    batch makes the column text for all): cast every landed column in the staging model
    with this, and quarantine the row when a non-null value casts to null, so one bad
    file or value never fails a load. Snowflake's landing table is typed by COPY already:
    a plain cast there. -#}
{% macro landing_cast(column, type) -%}
    {{ return(adapter.dispatch('landing_cast', 'restate')(column, type)) }}
{%- endmacro %}

{% macro default__landing_cast(column, type) -%}
    cast({{ column }} as {{ type }})
{%- endmacro %}

{% macro duckdb__landing_cast(column, type) -%}
    try_cast({{ column }} as {{ type }})
{%- endmacro %}
