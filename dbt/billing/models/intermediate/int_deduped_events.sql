-- Latest version of every valid event: latest updated_at, then latest arrival.
-- Each load reads only its ingestion window and competes those rows against the
-- version already kept, so reloading a window changes nothing.
{{ config(unique_key='event_id', incremental_strategy='delete+insert', on_schema_change='fail') }}

with new_versions as (
    select * from {{ ref('stg_billing__events') }}
    where rejection_reason is null
        and {{ restate.ingestion_window('ingested_at') }}
),

candidates as (
    select
        event_id, account_id, event_type, amount, currency, event_ts, event_date,
        updated_at, event_ingested_at, ingested_at, customer_email_hash,
        source_file, source_row_number
    from new_versions
    {% if is_incremental() %}
    union all
    select
        event_id, account_id, event_type, amount, currency, event_ts, event_date,
        updated_at, event_ingested_at, ingested_at, customer_email_hash,
        source_file, source_row_number
    from {{ this }}
    where event_id in (select event_id from new_versions)
    {% endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by event_id
            -- nulls last on every key: Snowflake puts NULLs first on desc, DuckDB last.
            order by updated_at desc nulls last, ingested_at desc nulls last,
                source_file desc nulls last, source_row_number desc nulls last
        ) as version_rank,
        count(*) over (partition by event_id) as candidate_count
    from candidates
),

final as (
    select * exclude (version_rank, candidate_count)
    from ranked
    where version_rank = 1
)

select * from final
