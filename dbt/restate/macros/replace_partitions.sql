{#- Custom incremental strategy: delete every row in partition_scope(), then insert
    the recomputed rows, inside the materialization's one transaction. Unlike
    delete+insert on a unique key, it also removes groups that no longer exist. -#}
{% macro get_incremental_replace_partitions_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set source = arg_dict["temp_relation"] -%}
    {%- set columns = arg_dict["dest_columns"] | map(attribute="quoted") | join(", ") -%}
    delete from {{ target }} where {{ partition_scope() }};
    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ source }};
{% endmacro %}
