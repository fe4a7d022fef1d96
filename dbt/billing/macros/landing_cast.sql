{#- A landed value as `type`, or null when it does not parse (the staging model then
    quarantines the row). DuckDB reads Parquet whose column may be a string in some
    file; Snowflake's landing table is typed by COPY already, so a plain cast. -#}
{% macro landing_cast(column, type) -%}
    {{ return(adapter.dispatch('landing_cast', 'restate_billing')(column, type)) }}
{%- endmacro %}

{% macro default__landing_cast(column, type) -%}
    cast({{ column }} as {{ type }})
{%- endmacro %}

{% macro duckdb__landing_cast(column, type) -%}
    try_cast({{ column }} as {{ type }})
{%- endmacro %}
