{#- Files another system lands under <landing>/<folder>/<batch>/*.parquet (the payment
    webhook journal, partner SFTP drops), typed as `columns` (name -> type), with the
    file each row came from as landed_file. Before the first file lands the relation is
    empty, with the same columns, so a fresh installation builds. DuckDB reads the files
    where they are (local or s3:// through the registered filesystem); written files
    only appear whole (the sources write *.parquet.partial, then rename).
    Snowflake: these systems are not staged there yet; the relation stays empty. -#}
{% macro landed_parquet(folder, columns) -%}
    {{ return(adapter.dispatch('landed_parquet', 'northstar_orders')(folder, columns)) }}
{%- endmacro %}

{% macro default__landed_parquet(folder, columns) -%}
    select
    {%- for name, type in columns.items() %}
        cast(null as {{ type }}) as {{ name }},
    {%- endfor %}
        cast(null as varchar) as landed_file
    where 1 = 0
{%- endmacro %}

{% macro duckdb__landed_parquet(folder, columns) -%}
    {%- set root = env_var('DBT_RESTATE_LANDING_URI', '') | trim -%}
    {%- if not modules.re.fullmatch('[A-Za-z0-9_-]+', folder) -%}
        {{ exceptions.raise_compiler_error("landed_parquet: folder " ~ folder ~ " is not a plain folder name") }}
    {%- endif -%}
    {%- set pattern = restate.restate_literal(root ~ '/' ~ folder ~ '/*/*.parquet') -%}
    {%- set files = 0 -%}
    {%- if execute and root -%}
        {%- set found = run_query("select count(*) from glob(" ~ pattern ~ ")") -%}
        {%- set files = found.columns[0].values()[0] -%}
    {%- endif -%}
    {%- if files -%}
    select
    {%- for name, type in columns.items() %}
        try_cast({{ adapter.quote(name) }} as {{ type }}) as {{ name }},
    {%- endfor %}
        filename as landed_file
    from read_parquet({{ pattern }}, union_by_name = true, filename = true)
    {%- else -%}
    {{ northstar_orders.default__landed_parquet(folder, columns) }}
    {%- endif -%}
{%- endmacro %}
