{#- Net revenue. v1 reproduces the historical bug (refunds left out of net
    revenue); v2 is the corrected definition in docs/contracts.md. -#}
{% macro net_revenue(gross_column, refunds_column) -%}
    {%- if var('revenue_logic', 'v2') == 'v1' -%}
        {{ gross_column }}
    {%- else -%}
        {{ gross_column }} - {{ refunds_column }}
    {%- endif -%}
{%- endmacro %}
