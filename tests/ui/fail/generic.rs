use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders")]
async fn on_order<T: Send>(order: Order, extra: T) -> Result<(), HandlerError> {
    let _ = (order.id, extra);
    Ok(())
}

fn main() {}
