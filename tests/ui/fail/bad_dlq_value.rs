use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Reading {
    id: String,
}

// `dlq = 5` says the two forms; a batch handler does not then also say it needs `dlq`.
#[kafka_handler(topic = "readings", batch(max = 10, linger = "5ms"), dlq = 5)]
async fn on_readings(readings: Vec<Reading>, ctx: BatchContext) -> Result<(), HandlerError> {
    let _ = (readings.len(), ctx.len());
    Ok(())
}

fn main() {}
