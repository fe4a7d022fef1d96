-- Typed, PII-free view over the raw landing events, with processing time and a
-- rejection reason per row (null = valid). A value that does not parse as its type
-- (a string-typed column in some file) quarantines its row instead of failing the load.
with source as (
    {{ raw_events() }}
),

checked as (
    select
        *,
        case
            when event_ts is not null and {{ restate.landing_cast('event_ts', 'timestamp') }} is null
                then 'bad_event_ts'
            when amount is not null and {{ restate.landing_cast('amount', 'decimal(18, 2)') }} is null
                then 'bad_amount'
            when updated_at is not null and {{ restate.landing_cast('updated_at', 'timestamp') }} is null
                then 'bad_updated_at'
            when event_ingested_at is not null
                and {{ restate.landing_cast('event_ingested_at', 'timestamp') }} is null
                then 'bad_event_ingested_at'
        end as cast_failure
    from source
),

renamed as (
    select
        cast(event_id as varchar) as event_id,
        cast(account_id as varchar) as account_id,
        cast(event_type as varchar) as event_type,
        {{ restate.landing_cast('amount', 'decimal(18, 2)') }} as amount,
        upper(cast(currency as varchar)) as currency,
        {{ restate.landing_cast('event_ts', 'timestamp') }} as event_ts,
        {{ restate.landing_cast('updated_at', 'timestamp') }} as updated_at,
        {{ restate.landing_cast('event_ingested_at', 'timestamp') }} as event_ingested_at,
        -- a null arrival time means the row arrived on time (see macros/source_events.sql)
        cast(landing_processed_at as timestamp) as ingested_at,
        cast({{ restate.landing_cast('event_ts', 'timestamp') }} as date) as event_date,
        -- PII never leaves staging: only a hash of the e-mail is kept
        {{ sha256_hex("lower(cast(customer_email as varchar))") }} as customer_email_hash,
        cast(source_file as varchar) as source_file,
        cast(source_row_number as bigint) as source_row_number,
        cast_failure
    from checked
),

final as (
    select
        * exclude (cast_failure),
        case
            when event_id is null then 'missing_event_id'
            when account_id is null then 'missing_account_id'
            when cast_failure is not null then cast_failure
            when event_ts is null then 'missing_event_ts'
            when event_type is null
                or event_type not in (
                    'subscription_created', 'plan_changed', 'invoice_paid',
                    'refund_issued', 'subscription_cancelled'
                ) then 'unknown_event_type'
            -- amounts are money only on these two; other events may carry 0 or nothing
            when event_type in ('invoice_paid', 'refund_issued') and amount is null
                then 'missing_amount'
            when event_type in ('invoice_paid', 'refund_issued') and amount <= 0
                then 'non_positive_amount'
            when currency is null
                or currency not in ({% for c in var('accepted_currencies') %}'{{ c }}'{{ "," if not loop.last }}{% endfor %})
                then 'unsupported_currency'
        end as rejection_reason
    from renamed
)

select * from final
