{#- Restatement runs build every selected model into the isolated schema named by
    var('restate_schema'); unselected parents resolve to production through
    dbt's --defer --favor-state. Otherwise the target schema is used as is. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set restate_schema = var('restate_schema', none) -%}
    {%- if restate_schema -%}
        {{ restate_schema | trim }}
    {%- elif custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
