-- examples/sensor_metrics.rs: the `metrics` table. One row per sensor reading; `id` grows in
-- insertion order, so a sensor's rows can be read back in the order they were written.
-- (`processed_events` is kafka-events' own migration, applied by the runtime.)
CREATE TABLE IF NOT EXISTS metrics (
    id          BIGSERIAL        PRIMARY KEY,
    event_id    TEXT             NOT NULL,
    sensor_id   TEXT             NOT NULL,
    metric      TEXT             NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    recorded_at TIMESTAMPTZ      NOT NULL,
    inserted_at TIMESTAMPTZ      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS metrics_sensor_recorded ON metrics (sensor_id, recorded_at);
