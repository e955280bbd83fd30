use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders")]
async fn on_order(order: Order) {
    let _ = order.id;
}

fn main() {}
