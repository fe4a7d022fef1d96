{#- Snowflake: the staging relation of an incremental run, one per restatement chunk.
    Incremental runs stage their rows in a transient table (tmp_relation_type:
    transient) rather than a session TEMPORARY table: the local Snowflake emulator
    cannot create temporary tables in a named schema, and a transient table behaves
    the same for a single run. Transient tables share the schema's namespace, so
    chunks running concurrently each get their own (suffixed with the chunk's dates
    and bucket). dbt-snowflake resolves it through the dbt-namespace dispatch of
    resolve_incremental_tmp_relation, which searches the root project: the root
    project adds snowflake__resolve_incremental_tmp_relation calling this macro
    (see README.md). -#}
{% macro chunk_tmp_relation(tmp_relation) -%}
    {%- set chunk = var('restate_chunk', none) -%}
    {%- if chunk -%}
        {%- do restate.restate_date_literal(chunk['start']) -%}
        {%- do restate.restate_date_literal(chunk['end']) -%}
        {%- do restate.restate_int(chunk.get('bucket', 0)) -%}
        {%- set suffix = (chunk['start'] ~ '_' ~ chunk['end'] ~ '_b' ~ chunk.get('bucket', 0)) | replace('-', '') -%}
        {{ return(tmp_relation.incorporate(path={'identifier': tmp_relation.identifier ~ '_' ~ suffix})) }}
    {%- endif -%}
    {{ return(tmp_relation) }}
{%- endmacro %}
