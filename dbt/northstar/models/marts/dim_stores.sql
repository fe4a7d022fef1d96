-- Stores as known from their orders: first order, channels sold through.
{{ config(materialized='table', full_refresh=none) }}

with orders as (
    select * from {{ ref('int_orders_latest') }}
),

final as (
    select
        store_id,
        min(order_ts) as first_order_at,
        count(distinct channel) as channels
    from orders
    group by store_id
)

select * from final
