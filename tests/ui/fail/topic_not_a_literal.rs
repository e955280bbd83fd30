use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

const ORDERS: &str = "orders";

// A non-literal topic is refused with the fix, and no "requires a topic" follows.
#[kafka_handler(topic = ORDERS, dlq)]
async fn on_order(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

#[kafka_handler(topic = 5)]
async fn on_number(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

fn main() {}
