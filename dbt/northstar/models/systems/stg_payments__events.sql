-- Payment provider events as the webhook journal landed them: one row per event id (a
-- journal flushed twice after a crash lands an event twice; the first landing is kept).
-- Tokenised fields only: no card data ever reaches the landing.
with landed as (
    {{ landed_parquet('payments', {
        'event_id': 'varchar', 'event_type': 'varchar', 'event_created': 'timestamp',
        'payment_id': 'varchar', 'order_id': 'varchar', 'amount': 'decimal(18, 2)',
        'currency': 'varchar', 'status': 'varchar', 'received_at': 'timestamp',
    }) }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by event_id order by received_at nulls last, landed_file nulls last
        ) as delivery
    from landed
    where event_id is not null
)

select event_id, event_type, event_created, payment_id, order_id, amount, currency, status,
    received_at, landed_file
from ranked
where delivery = 1
