{#- Deterministic entity bucket in [0, buckets): splits a date range into entity
    chunks. The hash differs by engine but is stable within one; the tool computes
    the same expression when it estimates chunk sizes. -#}
{% macro entity_bucket(column, buckets) -%}
    {{ return(adapter.dispatch('entity_bucket', 'restate')(column, buckets)) }}
{%- endmacro %}

{% macro default__entity_bucket(column, buckets) -%}
    (hash({{ column }}) % {{ buckets }})
{%- endmacro %}

{% macro duckdb__entity_bucket(column, buckets) -%}
    (hash({{ column }}) % {{ buckets }})
{%- endmacro %}

{#- Snowflake's hash() is signed. -#}
{% macro snowflake__entity_bucket(column, buckets) -%}
    (abs(hash({{ column }})) % {{ buckets }})
{%- endmacro %}
