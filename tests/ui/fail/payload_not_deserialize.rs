use kafka_events::prelude::*;

#[derive(validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders")]
async fn on_order(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

fn main() {}
