use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders", timeout = "0s")]
async fn instant(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

#[kafka_handler(topic = "payments", timeout = "soon")]
async fn vague(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

fn main() {}
