use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders", circuit(failures = 0, reset = "0s", cooldown = "1s"))]
async fn on_order(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

#[kafka_handler(topic = "payments", circuit)]
async fn on_payment(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

fn main() {}
