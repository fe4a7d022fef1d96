{#- Restatement runs build every selected model into the isolated schema named by
    var('restate_schema'); unselected parents resolve to production through dbt's
    --defer --favor-state. Otherwise the target schema, or the model's custom schema
    as is. dbt ignores generate_schema_name in installed packages: the root project
    adds a macro of that name calling restate.generate_schema_name (see README.md). -#}
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
