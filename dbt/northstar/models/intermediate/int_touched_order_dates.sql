-- Order dates a load must recompute in the daily marts: every date on which any
-- version of an order seen in this ingestion window falls, so an order whose
-- correction moved it to another day is taken out of its old day too.
{{ config(materialized='table', full_refresh=none) }}

with window_orders as (
    select distinct order_id
    from {{ ref('stg_shop__orders') }}
    where rejection_reason is null
        and {{ restate.load_window('ingested_at') }}
),

final as (
    select distinct versions.order_date
    from {{ ref('stg_shop__orders') }} as versions
    inner join window_orders on versions.order_id = window_orders.order_id
    where versions.rejection_reason is null
        and {{ restate.load_window('versions.ingested_at', lower=false) }}
)

select * from final
