-- Latest valid version of every order: latest updated_at, then latest arrival.
-- Each load reads only its ingestion window and competes those versions against the
-- one already kept, so reloading a window (the lookback) changes nothing.
{{ config(unique_key='order_id', incremental_strategy='delete+insert', on_schema_change='fail') }}

with new_versions as (
    select * from {{ ref('stg_shop__orders') }}
    where rejection_reason is null
        and {{ restate.ingestion_window('ingested_at') }}
),

candidates as (
    select
        order_id, store_id, channel, status, order_ts, order_date, updated_at,
        order_ingested_at, ingested_at, gross_amount, tax_amount, refund_amount,
        deleted_at, source_file, source_row_number
    from new_versions
    {% if is_incremental() %}
    union all
    select
        order_id, store_id, channel, status, order_ts, order_date, updated_at,
        order_ingested_at, ingested_at, gross_amount, tax_amount, refund_amount,
        deleted_at, source_file, source_row_number
    from {{ this }}
    where order_id in (select order_id from new_versions)
    {% endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by order_id
            -- nulls last on every key: Snowflake puts NULLs first on desc, DuckDB last.
            order by updated_at desc nulls last, ingested_at desc nulls last,
                source_file desc nulls last, source_row_number desc nulls last
        ) as version_rank
    from candidates
),

final as (
    select * exclude (version_rank)
    from ranked
    where version_rank = 1
)

select * from final
