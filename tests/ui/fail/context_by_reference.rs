use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders", dlq)]
async fn on_order(order: Order, ctx: &MessageContext) -> Result<(), HandlerError> {
    let _ = (order.id, ctx.offset());
    Ok(())
}

fn main() {}
