use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Metric {
    sensor: String,
}

#[kafka_handler(topic = "metrics", batch(max = 100))]
async fn without_dlq(events: Vec<Metric>) -> Result<(), HandlerError> {
    let _ = events.len();
    Ok(())
}

#[kafka_handler(topic = "metrics", batch(max = 100), dlq)]
async fn not_a_vec(event: Metric, ctx: BatchContext) -> Result<(), HandlerError> {
    let _ = (event.sensor, ctx.len());
    Ok(())
}

#[kafka_handler(topic = "metrics", batch(max = 0, linger = "soon"), dlq)]
async fn bad_values(events: Vec<Metric>) -> Result<(), HandlerError> {
    let _ = events.len();
    Ok(())
}

#[kafka_handler(topic = "metrics", batch(max = 10), dlq, concurrency = 4)]
async fn with_concurrency(events: Vec<Metric>) -> Result<(), HandlerError> {
    let _ = events.len();
    Ok(())
}

fn main() {}
