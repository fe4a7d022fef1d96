-- One row per order id seen by any of the three systems (shop orders, payment provider,
-- warehouse partners), with what each says and where they disagree. check_date is the
-- order's day, or the payment's / shipment's day for an id the shop does not have.
-- Rebuilt whole on every load: it compares the systems as they stand now.
{{ config(materialized='table') }}

-- A deleted order is still the shop's: its status reads 'deleted' (a charge left on it
-- is a disagreement, not a payment without an order).
with orders as (
    select order_id, store_id,
        case when deleted_at is not null then 'deleted' else status end as status,
        order_ts, order_date, coalesce(gross_amount, 0) as gross_amount,
        coalesce(tax_amount, 0) as tax_amount, coalesce(refund_amount, 0) as refund_amount
    from {{ ref('int_orders_latest') }}
),

-- The shop issued an id twice when one id was placed in two stores.
placed as (
    select order_id, count(distinct store_id) as stores
    from {{ ref('stg_shop__orders') }}
    where rejection_reason is null and status = 'placed'
    group by order_id
),

payments as (
    select
        order_id,
        sum(case when event_type = 'charge.succeeded' then amount else 0 end) as charged,
        sum(case when event_type = 'charge.refunded' then amount else 0 end) as refunded,
        min(case when event_type = 'charge.succeeded' then event_created end) as charged_at,
        min(event_created) as first_event_at
    from {{ ref('stg_payments__events') }}
    where order_id is not null
    group by order_id
),

shipments as (
    select order_id, min(shipped_at) as shipped_at, count(*) as shipments
    from {{ ref('stg_fulfilment__shipments') }}
    group by order_id
),

-- "Never fulfilled" is judged against the latest order the shop has, not the clock, so
-- a rebuild of old data gives the same answer.
as_of as (
    select max(order_ts) as latest_order_ts from orders
),

joined as (
    select
        coalesce(o.order_id, p.order_id, s.order_id) as order_id,
        cast(coalesce(o.order_ts, p.first_event_at, s.shipped_at) as date) as check_date,
        o.store_id,
        o.status as order_status,
        o.order_ts,
        o.gross_amount + o.tax_amount as order_total,
        o.refund_amount,
        p.charged,
        p.refunded,
        s.shipped_at,
        coalesce(s.shipments, 0) as shipments,
        coalesce(pl.stores, 0) > 1 as duplicate_order_id,
        o.order_id is not null as in_shop,
        p.order_id is not null as in_payments,
        s.order_id is not null as in_fulfilment,
        (select latest_order_ts from as_of) as latest_order_ts
    from orders as o
    full outer join payments as p on o.order_id = p.order_id
    full outer join shipments as s on coalesce(o.order_id, p.order_id) = s.order_id
    left join placed as pl on coalesce(o.order_id, p.order_id, s.order_id) = pl.order_id
)

select
    order_id,
    check_date,
    store_id,
    order_status,
    order_ts,
    order_total,
    refund_amount,
    charged,
    refunded,
    shipped_at,
    shipments,
    duplicate_order_id,
    in_shop,
    in_payments,
    in_fulfilment,
    not in_shop and in_payments as payment_without_order,
    not in_shop and in_fulfilment as shipment_without_order,
    -- Paid (charged, not cancelled) and no partner reported a shipment within N days.
    in_shop
        and coalesce(charged, 0) > 0
        and order_status in ('paid', 'shipped', 'refunded')
        and not in_fulfilment
        and order_ts < {{ dbt.dateadd('day', -(var('fulfil_within_days', 5) | int), 'latest_order_ts') }}
        as paid_never_fulfilled,
    -- The shop and the payment provider disagree on what happened to the order:
    -- cancelled but still charged beyond its refunds; unpaid in the shop but charged; a
    -- refund the provider did not make (or made for another amount). Only for orders
    -- the provider knows: without its records there is nothing to disagree with.
    in_shop and in_payments and (
        (order_status in ('cancelled', 'deleted') and coalesce(charged, 0) > coalesce(refunded, 0))
        or (order_status = 'placed' and coalesce(charged, 0) > 0)
        or (order_status = 'refunded' and coalesce(refunded, 0) <> refund_amount)
    ) as status_disagreement,
    -- Charged another amount than the order's total (a cancelled order's charge aside).
    in_shop and in_payments and order_status not in ('cancelled', 'deleted')
        and coalesce(charged, 0) <> order_total
        as amount_mismatch
from joined
