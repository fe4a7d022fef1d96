{#- The partitions one run of a partitioned mart replaces, as a predicate on
    event_date / account_id. Used both to select the rows to compute and, in the
    replace_partitions strategy, to delete what they replace, so a group that
    disappears is removed too.
    - restatement chunk: its event_date range x account bucket (x listed accounts);
    - incremental load: every event_date touched by newly ingested rows;
    - first build: everything.
    The chunk comes in as a var; every value in it is checked here (dates, integers,
    account ids against the declared pattern) and quoted by restate_literal, so a
    value that was edited on its way can never become SQL. -#}
{% macro partition_scope(date_column='event_date', account_column='account_id') -%}
    {%- set chunk = var('restate_chunk', none) -%}
    {%- if chunk -%}
        {%- set start = restate_date_literal(chunk["start"]) -%}
        {%- set end = restate_date_literal(chunk["end"]) -%}
        {%- set buckets = restate_int(chunk.get("buckets", 1)) -%}
        {{ date_column }} between {{ start }} and {{ end }}
        {%- if buckets > 1 %}
        and {{ account_bucket(account_column, buckets) }} = {{ restate_int(chunk["bucket"]) }}
        {%- endif %}
        {%- set entities = chunk.get("entities") or chunk.get("accounts") %}
        {%- if entities %}
        {%- set pattern = chunk.get("entity_pattern") or "[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}" %}
        and {{ account_column }} in ({% for a in entities %}{{ restate_entity_literal(a, pattern) }}{{ "," if not loop.last }}{% endfor %})
        {%- endif %}
    {%- elif is_incremental() -%}
        {{ date_column }} in (select event_date from {{ ref('int_touched_event_dates') }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{% macro restate_int(value) -%}
    {%- if value is not number or (value | int) != value -%}
        {{ exceptions.raise_compiler_error("restate_chunk: " ~ value ~ " is not an integer") }}
    {%- endif -%}
    {{ return(value | int) }}
{%- endmacro %}

{% macro restate_date_literal(value) -%}
    {%- if value is not string or not modules.re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", value) -%}
        {{ exceptions.raise_compiler_error("restate_chunk: " ~ value ~ " is not a YYYY-MM-DD date") }}
    {%- endif -%}
    {{ return("cast(" ~ restate_literal(value) ~ " as date)") }}
{%- endmacro %}

{% macro restate_entity_literal(value, pattern) -%}
    {%- if value is not string or not modules.re.fullmatch(pattern, value) -%}
        {{ exceptions.raise_compiler_error("restate_chunk: " ~ (value | string | truncate(60)) ~ " is not a valid account id") }}
    {%- endif -%}
    {{ return(restate_literal(value)) }}
{%- endmacro %}

{#- A string literal the warehouse reads back as exactly `value`. -#}
{% macro restate_literal(value) -%}
    {{ return(adapter.dispatch('restate_literal', 'restate_analytics')(value)) }}
{%- endmacro %}

{% macro default__restate_literal(value) -%}
    {{ return("'" ~ (value | string | replace("'", "''")) ~ "'") }}
{%- endmacro %}

{#- Snowflake also treats a backslash in a string literal as an escape. -#}
{% macro snowflake__restate_literal(value) -%}
    {{ return("'" ~ (value | string | replace("\\", "\\\\") | replace("'", "''")) ~ "'") }}
{%- endmacro %}
