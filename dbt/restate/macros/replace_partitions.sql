{#- Custom incremental strategy `replace_partitions`: delete every row in
    partition_scope(), then insert the recomputed rows, inside the materialization's
    one transaction. Unlike delete+insert on a unique key, it also removes groups
    that no longer exist. dbt looks for get_incremental_<strategy>_sql in the root
    project only, so the root project adds a one-line macro calling this one
    (see README.md). -#}
{% macro get_incremental_replace_partitions_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set source = arg_dict["temp_relation"] -%}
    {%- set columns = arg_dict["dest_columns"] | map(attribute="quoted") | join(", ") -%}
    delete from {{ target }} where {{ restate.partition_scope() }};
    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ source }};
{% endmacro %}
