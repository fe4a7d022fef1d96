{#- The restate package's macros that dbt looks for in the root project only: the
    schema naming of restatement runs, the replace_partitions incremental strategy
    and (Snowflake) one staging table per restatement chunk. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ restate.generate_schema_name(custom_schema_name, node) }}
{%- endmacro %}

{% macro get_incremental_replace_partitions_sql(arg_dict) -%}
    {{ return(restate.get_incremental_replace_partitions_sql(arg_dict)) }}
{%- endmacro %}

{% macro snowflake__resolve_incremental_tmp_relation(tmp_relation) -%}
    {{ return(restate.chunk_tmp_relation(tmp_relation)) }}
{%- endmacro %}
