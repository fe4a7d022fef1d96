{#- The partitions one run of a partitioned mart replaces, as a predicate on
    event_date / account_id. Used both to select the rows to compute and, in the
    replace_partitions strategy, to delete what they replace, so a group that
    disappears is removed too.
    - restatement chunk: its event_date range x account bucket (x listed accounts);
    - incremental load: every event_date touched by newly ingested rows;
    - first build: everything. -#}
{% macro partition_scope(date_column='event_date', account_column='account_id') -%}
    {%- set chunk = var('restate_chunk', none) -%}
    {%- if chunk -%}
        {{ date_column }} between cast('{{ chunk["start"] }}' as date) and cast('{{ chunk["end"] }}' as date)
        {%- if chunk.get("buckets", 1) > 1 %}
        and {{ account_bucket(account_column, chunk["buckets"]) }} = {{ chunk["bucket"] }}
        {%- endif %}
        {%- if chunk.get("accounts") %}
        and {{ account_column }} in ({% for a in chunk["accounts"] %}'{{ a }}'{{ "," if not loop.last }}{% endfor %})
        {%- endif %}
    {%- elif is_incremental() -%}
        {{ date_column }} in (select event_date from {{ ref('int_touched_event_dates') }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
