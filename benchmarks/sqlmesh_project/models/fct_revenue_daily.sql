/* Daily revenue per account and currency, the same SQL as restate's mart, as an
   INCREMENTAL_BY_TIME_RANGE model over the deduplicated events. */
MODEL (
  name analytics.fct_revenue_daily,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column event_date
  ),
  start '2025-09-01',
  cron '@daily',
  grain (event_date, account_id, currency)
);

WITH revenue_events AS (
  SELECT *
  FROM raw.deduped_events
  WHERE event_type IN ('invoice_paid', 'refund_issued')
    AND event_date BETWEEN @start_date AND @end_date
), aggregated AS (
  SELECT
    event_date,
    account_id,
    currency,
    CAST(SUM(CASE WHEN event_type = 'invoice_paid' THEN amount ELSE 0 END) AS DECIMAL(18, 2)) AS gross_revenue,
    CAST(SUM(CASE WHEN event_type = 'refund_issued' THEN amount ELSE 0 END) AS DECIMAL(18, 2)) AS refunds,
    SUM(CASE WHEN event_type = 'invoice_paid' THEN 1 ELSE 0 END) AS invoice_count,
    SUM(CASE WHEN event_type = 'refund_issued' THEN 1 ELSE 0 END) AS refund_count,
    MAX(ingested_at) AS last_ingested_at
  FROM revenue_events
  GROUP BY event_date, account_id, currency
)
SELECT
  event_date,
  account_id,
  currency,
  gross_revenue,
  refunds,
  CAST(gross_revenue - refunds AS DECIMAL(18, 2)) AS net_revenue, /* revenue_logic: v2 */
  invoice_count,
  refund_count,
  last_ingested_at
FROM aggregated
