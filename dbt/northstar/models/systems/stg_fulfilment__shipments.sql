-- Shipments the warehouse partners reported (SFTP drops that passed their schema check),
-- one row per order, carrier and shipping time (a file dropped twice lands once already;
-- the same shipment in two files counts once).
with landed as (
    {{ landed_parquet('fulfilment', {
        'order_id': 'varchar', 'shipped_at': 'timestamp', 'carrier': 'varchar', 'units': 'integer',
        'received_at': 'timestamp',
    }) }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by order_id, carrier, shipped_at order by received_at nulls last, landed_file nulls last
        ) as report
    from landed
    where order_id is not null
)

select order_id, shipped_at, carrier, units, received_at, landed_file
from ranked
where report = 1
