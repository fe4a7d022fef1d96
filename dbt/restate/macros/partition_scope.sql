{#- The partitions one run of a partitioned model replaces, as a predicate on the
    model's own meta.restate date_column / entity_column. Used both to select the
    rows to compute and, in the replace_partitions strategy, to delete what they
    replace, so a group that disappears is removed too.
    - restatement chunk (var restate_chunk): its date range x entity bucket
      (x listed entities);
    - incremental load: every date listed by the meta.restate.touched_dates model;
    - first build: everything.
    A chunk with "template": true renders the same predicate with the tokens
    __restate_chunk_start__, __restate_chunk_end__ and __restate_chunk_bucket__ in
    place of its bounds: the tool compiles a model once per restatement this way and
    runs the SQL for every further chunk with the tokens replaced by checked values.
    The chunk comes in as a var; every value in it is checked here (dates, integers,
    entity ids against the declared pattern) and quoted by restate_literal, so a
    value that was edited on its way can never become SQL.
    At parse time (execute is false) meta may not be complete yet: the predicate is
    then `true` and nothing is checked; the model declares
    `-- depends_on: {{ ref('<touched_dates>') }}` for the dependency. -#}
{% macro partition_scope() -%}
    {%- if not execute -%}
        {{ return("true") }}
    {%- endif -%}
    {%- set chunk = var('restate_chunk', none) -%}
    {%- if chunk -%}
        {%- set date_column = restate.restate_meta_column('date_column', 'the partition date column') -%}
        {%- set template = chunk.get("template", false) is sameas true -%}
        {%- if template -%}
            {%- set start = "cast('__restate_chunk_start__' as date)" -%}
            {%- set end = "cast('__restate_chunk_end__' as date)" -%}
        {%- else -%}
            {%- set start = restate.restate_date_literal(chunk["start"]) -%}
            {%- set end = restate.restate_date_literal(chunk["end"]) -%}
        {%- endif -%}
        {%- set buckets = restate.restate_int(chunk.get("buckets", 1)) -%}
        {%- set entities = chunk.get("entities") or chunk.get("accounts") -%}
        {%- if buckets > 1 or entities -%}
            {%- set entity_column = restate.restate_meta_column('entity_column', 'the chunk restates by entity') -%}
        {%- endif -%}
        {{ date_column }} between {{ start }} and {{ end }}
        {%- if buckets > 1 %}
        and {{ restate.entity_bucket(entity_column, buckets) }} = {{ "__restate_chunk_bucket__" if template else restate.restate_int(chunk["bucket"]) }}
        {%- endif %}
        {%- if entities %}
        {%- set pattern = chunk.get("entity_pattern") or "[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}" %}
        {%- set label = modules.re.sub("_id$", "", entity_column) | replace("_", " ") %}
        and {{ entity_column }} in ({% for e in entities %}{{ restate.restate_entity_literal(e, pattern, label) }}{{ "," if not loop.last }}{% endfor %})
        {%- endif %}
    {%- elif is_incremental() -%}
        {%- set date_column = restate.restate_meta_column('date_column', 'the partition date column') -%}
        {%- set touched = restate.restate_meta_column('touched_dates', 'the model listing the dates a load recomputed') -%}
        {{ date_column }} in (select {{ date_column }} from {{ ref(touched) }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The calling model's meta.restate[key]: a plain identifier, or a one-line error
    naming the model and the key. -#}
{% macro restate_meta_column(key, what) -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set contract = meta.get('restate') or {} -%}
    {%- set value = contract.get(key) if contract is mapping else none -%}
    {%- if not value -%}
        {{ exceptions.raise_compiler_error(model.name ~ ": meta.restate." ~ key ~ " is missing (" ~ what ~ ")") }}
    {%- endif -%}
    {%- if value is not string or not modules.re.fullmatch("[A-Za-z_][A-Za-z0-9_]*", value) -%}
        {{ exceptions.raise_compiler_error(model.name ~ ": meta.restate." ~ key ~ " = " ~ value ~ " is not a column or model name") }}
    {%- endif -%}
    {{ return(value) }}
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
    {{ return("cast(" ~ restate.restate_literal(value) ~ " as date)") }}
{%- endmacro %}

{#- An entity id as a string literal, when it matches `pattern` as a whole. `label`
    names the entity in the error (account_id -> "account id"). -#}
{% macro restate_entity_literal(value, pattern, label="entity") -%}
    {%- if value is not string or not modules.re.fullmatch(pattern, value) -%}
        {{ exceptions.raise_compiler_error("restate_chunk: " ~ (value | string | truncate(60)) ~ " is not a valid " ~ label ~ " id") }}
    {%- endif -%}
    {{ return(restate.restate_literal(value)) }}
{%- endmacro %}

{#- A string literal the warehouse reads back as exactly `value`. -#}
{% macro restate_literal(value) -%}
    {{ return(adapter.dispatch('restate_literal', 'restate')(value)) }}
{%- endmacro %}

{% macro default__restate_literal(value) -%}
    {{ return("'" ~ (value | string | replace("'", "''")) ~ "'") }}
{%- endmacro %}

{#- Snowflake also treats a backslash in a string literal as an escape. -#}
{% macro snowflake__restate_literal(value) -%}
    {{ return("'" ~ (value | string | replace("\\", "\\\\") | replace("'", "''")) ~ "'") }}
{%- endmacro %}
