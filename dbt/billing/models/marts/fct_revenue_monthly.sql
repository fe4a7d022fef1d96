-- Monthly revenue per account and currency. A view over fct_revenue_daily, so a
-- promoted restatement of the daily partitions corrects it in the same instant.
{{ config(materialized='view', full_refresh=none) }}

with daily as (
    select * from {{ ref('fct_revenue_daily') }}
),

final as (
    select
        cast(date_trunc('month', event_date) as date) as event_month,
        account_id,
        currency,
        cast(sum(gross_revenue) as decimal(18, 2)) as gross_revenue,
        cast(sum(refunds) as decimal(18, 2)) as refunds,
        cast(sum(net_revenue) as decimal(18, 2)) as net_revenue,
        sum(invoice_count) as invoice_count,
        sum(refund_count) as refund_count
    from daily
    group by 1, 2, 3
)

select * from final
