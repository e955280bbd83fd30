use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders")]
async fn on_order(order: Order, ctx: MessageContext, extra: u32) -> Result<(), HandlerError> {
    let _ = (order.id, ctx, extra);
    Ok(())
}

fn main() {}
