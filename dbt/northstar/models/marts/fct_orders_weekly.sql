-- Weekly orders per store (weeks start on Monday). A view over fct_orders_daily, so a
-- promoted restatement of the daily partitions corrects it in the same instant.
{{ config(materialized='view', full_refresh=none) }}

with daily as (
    select * from {{ ref('fct_orders_daily') }}
),

final as (
    select
        cast(date_trunc('week', order_date) as date) as order_week,
        store_id,
        sum(orders) as orders,
        cast(sum(gross_sales) as decimal(18, 2)) as gross_sales,
        cast(sum(refunds) as decimal(18, 2)) as refunds,
        cast(sum(tax) as decimal(18, 2)) as tax,
        cast(sum(net_sales) as decimal(18, 2)) as net_sales
    from daily
    group by 1, 2
)

select * from final
