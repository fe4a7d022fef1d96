-- Daily revenue per account and currency, the same SQL as restate's mart, as a
-- microbatch incremental: one batch per event_date, replaced by delete+insert.
{{ config(
    materialized='incremental',
    incremental_strategy='microbatch',
    event_time='event_date',
    batch_size='day',
    begin='2025-09-01',
    lookback=0
) }}

with revenue_events as (
    select * from {{ source('bench', 'deduped_events') }}
    where event_type in ('invoice_paid', 'refund_issued')
),

aggregated as (
    select
        event_date,
        account_id,
        currency,
        cast(sum(case when event_type = 'invoice_paid' then amount else 0 end) as decimal(18, 2))
            as gross_revenue,
        cast(sum(case when event_type = 'refund_issued' then amount else 0 end) as decimal(18, 2))
            as refunds,
        sum(case when event_type = 'invoice_paid' then 1 else 0 end) as invoice_count,
        sum(case when event_type = 'refund_issued' then 1 else 0 end) as refund_count,
        max(ingested_at) as last_ingested_at
    from revenue_events
    group by event_date, account_id, currency
),

final as (
    select
        event_date,
        account_id,
        currency,
        gross_revenue,
        refunds,
        cast(
            {% if var('revenue_logic') == 'v1' %}gross_revenue{% else %}gross_revenue - refunds{% endif %}
            as decimal(18, 2)
        ) as net_revenue,
        invoice_count,
        refund_count,
        last_ingested_at
    from aggregated
)

select * from final
