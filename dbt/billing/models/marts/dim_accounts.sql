-- Accounts as known from their subscription_created events.
{{ config(materialized='table', full_refresh=none) }}

with subscriptions as (
    select * from {{ ref('int_deduped_events') }}
    where event_type = 'subscription_created'
),

final as (
    select
        account_id,
        min(event_ts) as subscribed_at,
        min(currency) as currency
    from subscriptions
    group by account_id
)

select * from final
