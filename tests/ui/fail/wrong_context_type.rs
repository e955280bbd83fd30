use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders", dlq)]
async fn on_order(order: Order, ctx: BatchContext) -> Result<(), HandlerError> {
    let _ = (order.id, ctx.len());
    Ok(())
}

#[kafka_handler(topic = "refunds", dlq)]
async fn on_refund(order: Order, ctx: String) -> Result<(), HandlerError> {
    let _ = (order.id, ctx);
    Ok(())
}

fn main() {}
