-- Event dates a load must recompute in the daily marts: every date on which any
-- version of an event seen in this ingestion window falls (new and previous
-- dates of a corrected event alike).
{{ config(materialized='table', full_refresh=none) }}

with window_events as (
    select distinct event_id
    from {{ ref('stg_billing__events') }}
    where rejection_reason is null
        and {{ restate.load_window('ingested_at') }}
),

final as (
    select distinct versions.event_date
    from {{ ref('stg_billing__events') }} as versions
    inner join window_events on versions.event_id = window_events.event_id
    where versions.rejection_reason is null
        and {{ restate.load_window('versions.ingested_at', lower=false) }}
)

select * from final
