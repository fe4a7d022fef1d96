{#- Deterministic account bucket in [0, buckets): splits a date range into
    account chunks. The hash differs by engine but is stable within one. -#}
{% macro account_bucket(column, buckets) -%}
    {{ return(adapter.dispatch('account_bucket', 'restate_analytics')(column, buckets)) }}
{%- endmacro %}

{% macro default__account_bucket(column, buckets) -%}
    (hash({{ column }}) % {{ buckets }})
{%- endmacro %}

{% macro duckdb__account_bucket(column, buckets) -%}
    (hash({{ column }}) % {{ buckets }})
{%- endmacro %}

{% macro snowflake__account_bucket(column, buckets) -%}
    (abs(hash({{ column }})) % {{ buckets }})
{%- endmacro %}
