-- kafka-events: the idempotency table of `#[kafka_handler(..., idempotent)]`.
-- One row per event a handler has processed; a redelivered event finds its row and is skipped.
-- `scope` is `<service>/<topic>`: two services (or two handlers) may see the same event id.
CREATE TABLE IF NOT EXISTS processed_events (
    scope        TEXT        NOT NULL,
    event_id     TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, event_id)
);
-- For pruning old rows: DELETE FROM processed_events WHERE processed_at < now() - interval '30 days'.
CREATE INDEX IF NOT EXISTS processed_events_processed_at ON processed_events (processed_at);
