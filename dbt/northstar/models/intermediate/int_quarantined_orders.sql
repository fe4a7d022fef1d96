-- Every rejected raw order row with its reason; nothing is dropped silently. Keyed by
-- its place in the landing files, so reloading a window changes nothing.
{{ config(unique_key=['source_file', 'source_row_number'], incremental_strategy='delete+insert', on_schema_change='fail') }}

with rejected as (
    select * from {{ ref('stg_shop__orders') }}
    where rejection_reason is not null
        and {{ restate.ingestion_window('ingested_at') }}
),

final as (
    select
        source_file, source_row_number, rejection_reason,
        order_id, store_id, channel, status, order_ts, order_date, updated_at,
        order_ingested_at, ingested_at, gross_amount, tax_amount, refund_amount
    from rejected
)

select * from final
