-- Typed view over the raw landed order versions, with processing time and a
-- rejection reason per row (null = valid). A value that does not parse as its type
-- rejects its row instead of failing the load.
with source as (
    {{ raw_orders() }}
),

checked as (
    select
        *,
        case
            when order_ts is not null and {{ restate.landing_cast('order_ts', 'timestamp') }} is null
                then 'bad_order_ts'
            when updated_at is not null and {{ restate.landing_cast('updated_at', 'timestamp') }} is null
                then 'bad_updated_at'
            when gross_amount is not null and {{ restate.landing_cast('gross_amount', 'decimal(18, 2)') }} is null
                then 'bad_amount'
            when tax_amount is not null and {{ restate.landing_cast('tax_amount', 'decimal(18, 2)') }} is null
                then 'bad_amount'
            when refund_amount is not null and {{ restate.landing_cast('refund_amount', 'decimal(18, 2)') }} is null
                then 'bad_amount'
            when deleted_at is not null and {{ restate.landing_cast('deleted_at', 'timestamp') }} is null
                then 'bad_deleted_at'
        end as cast_failure
    from source
),

renamed as (
    select
        cast(order_id as varchar) as order_id,
        cast(store_id as varchar) as store_id,
        lower(cast(channel as varchar)) as channel,
        lower(cast(status as varchar)) as status,
        {{ restate.landing_cast('order_ts', 'timestamp') }} as order_ts,
        cast({{ restate.landing_cast('order_ts', 'timestamp') }} as date) as order_date,
        {{ restate.landing_cast('updated_at', 'timestamp') }} as updated_at,
        {{ restate.landing_cast('order_ingested_at', 'timestamp') }} as order_ingested_at,
        -- processing time: a null arrival time means the row arrived on time
        cast(landing_processed_at as timestamp) as ingested_at,
        {{ restate.landing_cast('gross_amount', 'decimal(18, 2)') }} as gross_amount,
        coalesce({{ restate.landing_cast('tax_amount', 'decimal(18, 2)') }}, 0) as tax_amount,
        coalesce({{ restate.landing_cast('refund_amount', 'decimal(18, 2)') }}, 0) as refund_amount,
        {{ restate.landing_cast('deleted_at', 'timestamp') }} as deleted_at,
        cast(source_file as varchar) as source_file,
        cast(source_row_number as bigint) as source_row_number,
        cast_failure
    from checked
),

final as (
    select
        * exclude (cast_failure),
        case
            when order_id is null then 'missing_order_id'
            when store_id is null then 'missing_store_id'
            when cast_failure is not null then cast_failure
            when order_ts is null then 'missing_order_ts'
            when status is null
                or status not in ({% for s in var('accepted_statuses') %}'{{ s }}'{{ "," if not loop.last }}{% endfor %})
                then 'unknown_status'
            when gross_amount is null then 'missing_gross_amount'
            when gross_amount < 0 or tax_amount < 0 or refund_amount < 0 then 'negative_amount'
            when refund_amount > gross_amount then 'refund_exceeds_gross'
        end as rejection_reason
    from renamed
)

select * from final
