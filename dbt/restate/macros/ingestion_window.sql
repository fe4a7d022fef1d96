{#- Rows of one incremental load: processed after the previous watermark minus the
    lookback and at most the new watermark (vars ingested_since / ingested_until, set
    by the tool), so files that land while a load runs are left for the next one.
    The first build takes everything up to ingested_until. -#}
{% macro ingestion_window(column) -%}
    {{ column }} <= cast({{ restate.restate_literal(var("ingested_until", "9999-12-31 00:00:00")) }} as timestamp)
    {%- if is_incremental() %}
    and {{ column }} > cast({{ restate.restate_literal(var("ingested_since", "1900-01-01 00:00:00")) }} as timestamp)
    {%- endif %}
{%- endmacro %}

{#- The same window with both bounds always, for a model rebuilt whole on every load,
    where is_incremental() is never true: e.g. the table of dates a load touched
    (`meta.restate.touched_dates`). ingestion_window there would take every row ever
    processed, and every load would recompute every partition. lower=false keeps only
    the upper bound (every version processed up to this load). -#}
{% macro load_window(column, lower=true) -%}
    {{ column }} <= cast({{ restate.restate_literal(var("ingested_until", "9999-12-31 00:00:00")) }} as timestamp)
    {%- if lower %}
    and {{ column }} > cast({{ restate.restate_literal(var("ingested_since", "1900-01-01 00:00:00")) }} as timestamp)
    {%- endif %}
{%- endmacro %}
