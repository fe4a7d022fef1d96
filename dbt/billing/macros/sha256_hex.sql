{#- Keyed hex sha256 of a string: PII columns are kept only as this hash, so a list of
    customer e-mails hashed without the key finds nobody. Neither DuckDB 2.0 nor Snowflake
    SQL has HMAC, so it is sha256(key || value). The key is the secret setting
    RESTATE_PII_HASH_KEY (else the installation's key file), never written into the repo.
    DuckDB: read at query time from a session variable set by restate.dbt_s3_plugin, so it
    is never rendered into SQL (the staging view's definition does not hold it). Without the
    variable (a session that is not dbt's, e.g. a Soda check reading the view) the hash is
    null, never an unkeyed hash. -#}
{% macro sha256_hex(expression) -%}
    {{ return(adapter.dispatch('sha256_hex', 'restate_billing')(expression)) }}
{%- endmacro %}

{% macro default__sha256_hex(expression) -%}
    sha256(getvariable('restate_pii_hash_key') || {{ expression }})
{%- endmacro %}

{#- Snowflake views cannot read session variables: the key comes from the environment at
    compile time (DBT_RESTATE_PII_HASH_KEY), so restrict who may read the staging view's DDL. -#}
{% macro snowflake__sha256_hex(expression) -%}
    sha2({{ "'" ~ (env_var('DBT_RESTATE_PII_HASH_KEY') | replace("'", "''")) ~ "'" }} || {{ expression }}, 256)
{%- endmacro %}
