{#- Rows of one incremental load: processed after the previous watermark minus the
    lookback (set by the tool) and at most the new watermark, so files that land
    while a load runs are left for the next one. -#}
{% macro ingestion_window(column) -%}
    {{ column }} <= cast('{{ var("ingested_until") }}' as timestamp)
    {%- if is_incremental() %}
    and {{ column }} > cast('{{ var("ingested_since") }}' as timestamp)
    {%- endif %}
{%- endmacro %}
