-- depends_on: {{ ref('int_touched_order_dates') }}
-- Daily orders per store. Each run replaces whole partitions (restate.partition_scope):
-- the order dates touched by a load, or a restatement chunk.
{{ config(
    incremental_strategy='replace_partitions',
    on_schema_change='fail',
    meta={'restate': {
        'date_column': 'order_date',
        'entity_column': 'store_id',
        'keys': ['order_date', 'store_id'],
        'metrics': ['orders', 'gross_sales', 'refunds', 'tax', 'net_sales'],
        'upstream': {'model': 'int_orders_latest', 'processed_at': 'ingested_at'},
        'touched_dates': 'int_touched_order_dates',
        'quarantine': {'model': 'int_quarantined_orders', 'processed_at': 'ingested_at',
                       'reason': 'rejection_reason'},
    }}
) }}

with orders as (
    select * from {{ ref('int_orders_latest') }}
    where {{ restate.partition_scope() }}
),

amounts as (
    select
        order_date,
        store_id,
        ingested_at,
        -- a cancelled order is no sale: it counts 0 orders and 0 gross and tax;
        -- a deleted order (soft delete at the source) counts nothing at all
        case when status = 'cancelled' or deleted_at is not null then 0 else 1 end as is_sale,
        case when status = 'cancelled' or deleted_at is not null then 0 else gross_amount end as gross_amount,
        case when status = 'cancelled' or deleted_at is not null then 0 else tax_amount end as tax_amount,
        case when deleted_at is not null then 0 else {{ order_refunds('status', 'refund_amount') }} end
            as refund_amount
    from orders
),

aggregated as (
    select
        order_date,
        store_id,
        cast(sum(is_sale) as bigint) as orders,
        cast(sum(gross_amount) as decimal(18, 2)) as gross_sales,
        cast(sum(refund_amount) as decimal(18, 2)) as refunds,
        cast(sum(tax_amount) as decimal(18, 2)) as tax,
        max(ingested_at) as last_ingested_at
    from amounts
    group by order_date, store_id
),

final as (
    select
        order_date,
        store_id,
        orders,
        gross_sales,
        refunds,
        tax,
        cast(gross_sales - refunds as decimal(18, 2)) as net_sales,
        last_ingested_at
    from aggregated
)

select * from final
