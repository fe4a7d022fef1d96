-- Typed, PII-free view over the raw landing events, with processing time and a
-- rejection reason per row (null = valid).
with source as (
    {{ raw_events() }}
),

renamed as (
    select
        cast(event_id as varchar) as event_id,
        cast(account_id as varchar) as account_id,
        cast(event_type as varchar) as event_type,
        cast(amount as decimal(18, 2)) as amount,
        upper(cast(currency as varchar)) as currency,
        cast(event_ts as timestamp) as event_ts,
        cast(updated_at as timestamp) as updated_at,
        cast(event_ingested_at as timestamp) as event_ingested_at,
        -- a null arrival time means the row arrived on time
        cast(coalesce(event_ingested_at, event_ts) as timestamp) as ingested_at,
        cast(event_ts as date) as event_date,
        -- PII never leaves staging: only a hash of the e-mail is kept
        {{ sha256_hex("lower(cast(customer_email as varchar))") }} as customer_email_hash,
        cast(source_file as varchar) as source_file,
        cast(source_row_number as bigint) as source_row_number
    from source
),

final as (
    select
        *,
        case
            when event_id is null then 'missing_event_id'
            when account_id is null then 'missing_account_id'
            when event_ts is null then 'missing_event_ts'
            when event_type is null
                or event_type not in (
                    'subscription_created', 'plan_changed', 'invoice_paid',
                    'refund_issued', 'subscription_cancelled'
                ) then 'unknown_event_type'
            when amount is null then 'missing_amount'
            when amount <= 0 then 'non_positive_amount'
            when currency is null
                or currency not in ({% for c in var('accepted_currencies') %}'{{ c }}'{{ "," if not loop.last }}{% endfor %})
                then 'unsupported_currency'
        end as rejection_reason
    from renamed
)

select * from final
