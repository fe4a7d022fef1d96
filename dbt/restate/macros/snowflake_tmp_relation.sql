{#- Snowflake incremental runs stage their rows in a transient table (tmp_relation_type:
    transient in dbt_project.yml) rather than a session TEMPORARY table: the local
    Snowflake emulator cannot create temporary tables in a named schema, and a transient
    table behaves the same for a single run. Transient tables share the schema's
    namespace, so restatement chunks running concurrently get one staging table each. -#}
{% macro snowflake__resolve_incremental_tmp_relation(tmp_relation) -%}
    {%- set chunk = var('restate_chunk', none) -%}
    {%- if chunk -%}
        {%- do restate_date_literal(chunk['start']) -%}
        {%- do restate_date_literal(chunk['end']) -%}
        {%- do restate_int(chunk.get('bucket', 0)) -%}
        {%- set suffix = (chunk['start'] ~ '_' ~ chunk['end'] ~ '_b' ~ chunk.get('bucket', 0)) | replace('-', '') -%}
        {{ return(tmp_relation.incorporate(path={'identifier': tmp_relation.identifier ~ '_' ~ suffix})) }}
    {%- endif -%}
    {{ return(tmp_relation) }}
{%- endmacro %}
