{#- Hex sha256 of a string (PII columns are kept only as this hash). -#}
{% macro sha256_hex(expression) -%}
    {{ return(adapter.dispatch('sha256_hex', 'restate_analytics')(expression)) }}
{%- endmacro %}

{% macro default__sha256_hex(expression) -%}
    sha256({{ expression }})
{%- endmacro %}

{% macro snowflake__sha256_hex(expression) -%}
    sha2({{ expression }}, 256)
{%- endmacro %}
