use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders", concurrency = 0)]
async fn zero(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

#[kafka_handler(topic = "payments", keyless = "unordered")]
async fn keyless_without_concurrency(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

#[kafka_handler(topic = "refunds", concurrency = 8, keyless = "random")]
async fn unknown_keyless(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

fn main() {}
