{#- dbt looks up an incremental strategy's macro in the root project only: this shim
    hands the replace_partitions strategy to the restate package. -#}
{% macro get_incremental_replace_partitions_sql(arg_dict) -%}
    {{ return(restate.get_incremental_replace_partitions_sql(arg_dict)) }}
{%- endmacro %}
