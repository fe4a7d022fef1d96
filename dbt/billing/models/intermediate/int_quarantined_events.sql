-- Every rejected raw row with its reason; nothing is dropped silently. Keyed by
-- its place in the landing files, so reloading a window changes nothing.
{{ config(unique_key=['source_file', 'source_row_number'], incremental_strategy='delete+insert', on_schema_change='fail') }}

with rejected as (
    select * from {{ ref('stg_billing__events') }}
    where rejection_reason is not null
        and {{ restate.ingestion_window('ingested_at') }}
),

final as (
    select
        source_file, source_row_number, rejection_reason,
        event_id, account_id, event_type, amount, currency, event_ts, event_date,
        updated_at, event_ingested_at, ingested_at, customer_email_hash
    from rejected
)

select * from final
