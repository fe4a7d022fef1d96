-- depends_on: {{ ref('int_touched_event_dates') }}
-- Daily revenue per account and currency. Each run replaces whole partitions
-- (restate.partition_scope): the event dates touched by a load, or a restatement chunk.
{{ config(
    incremental_strategy='replace_partitions',
    on_schema_change='fail',
    meta={'restate': {
        'date_column': 'event_date',
        'entity_column': 'account_id',
        'keys': ['event_date', 'account_id', 'currency'],
        'metrics': ['gross_revenue', 'refunds', 'net_revenue', 'invoice_count', 'refund_count'],
        'dimensions': ['currency'],
        'upstream': {'model': 'int_deduped_events', 'processed_at': 'ingested_at'},
        'touched_dates': 'int_touched_event_dates',
        'quarantine': {'model': 'int_quarantined_events', 'processed_at': 'ingested_at',
                       'reason': 'rejection_reason'},
    }}
) }}

with revenue_events as (
    select * from {{ ref('int_deduped_events') }}
    where event_type in ('invoice_paid', 'refund_issued')
        and {{ restate.partition_scope() }}
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
        cast(sum(case when event_type = 'invoice_paid' then 1 else 0 end) as bigint) as invoice_count,
        cast(sum(case when event_type = 'refund_issued' then 1 else 0 end) as bigint) as refund_count,
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
        cast({{ net_revenue('gross_revenue', 'refunds') }} as decimal(18, 2)) as net_revenue,
        invoice_count,
        refund_count,
        last_ingested_at
    from aggregated
)

select * from final
