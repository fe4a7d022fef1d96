{#- Restatement runs build into the isolated schema named by var('restate_schema');
    the restate package holds the logic, dbt only looks for this macro in the root project. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ restate.generate_schema_name(custom_schema_name, node) }}
{%- endmacro %}
