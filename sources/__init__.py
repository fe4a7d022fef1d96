"""Source connectors: read the systems of record into restate's landing (the contract the
core reads). PostgreSQL tables by keyset pages (`sources.postgres`), Stripe payment
webhooks through a durable journal (`sources.stripe_webhooks`). The core imports none of
them; each lands Parquet files under `<landing>/<folder>/<batch>/`."""
