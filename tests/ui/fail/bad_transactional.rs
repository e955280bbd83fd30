use kafka_events::prelude::*;

#[derive(serde::Deserialize, validator::Validate)]
struct Order {
    id: String,
}

#[kafka_handler(topic = "orders", transactional, concurrency = 4)]
async fn with_concurrency(order: Order, ctx: MessageContext) -> Result<(), HandlerError> {
    let _ = (order.id, ctx.publisher());
    Ok(())
}

#[kafka_handler(topic = "payments", transactional, idempotent)]
async fn with_idempotent(order: Order) -> Result<(), HandlerError> {
    let _ = order.id;
    Ok(())
}

fn main() {}
