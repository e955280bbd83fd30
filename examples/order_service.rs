//! A service as it is deployed (`deploy/kubernetes/` runs this one): two handlers that run until
//! SIGTERM, configured only by the environment.
//!
//! `orders.created` → `on_order_created` checks the order and publishes `OrderAccepted` to
//! `orders.accepted` (keyed by customer, in the input's correlation id) → `send_confirmation`.
//!
//! ```sh
//! cargo run --example order_service                                   # embedded broker, until Ctrl-C
//! KAFKA_BROKERS=localhost:9092 KAFKA_EVENTS_HTTP=0.0.0.0:9464 cargo run --example order_service
//! KAFKA_EVENTS_DESCRIBE=asyncapi cargo run --example order_service    # its AsyncAPI document, no broker
//! ```
//!
//! The event types derive `schemars::JsonSchema`, so the topology document carries their JSON
//! Schemas (with the `validator` constraints: `minLength`, `minimum`).

use kafka_events::prelude::*;
use kafka_events::PublishOptions;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use validator::Validate;

/// An order as the shop publishes it.
#[derive(Debug, Serialize, Deserialize, Validate, JsonSchema)]
pub struct OrderCreated {
    /// The order's id.
    #[validate(length(min = 1))]
    pub id: String,
    /// Who ordered.
    #[validate(length(min = 1))]
    pub customer: String,
    /// Total, in the shop's currency.
    #[validate(range(min = 0.01))]
    pub amount: f64,
}

/// An order this service accepted.
#[derive(Debug, Serialize, Deserialize, Validate, JsonSchema)]
pub struct OrderAccepted {
    /// The order's id.
    #[validate(length(min = 1))]
    pub id: String,
    /// Who ordered.
    #[validate(length(min = 1))]
    pub customer: String,
}

/// Orders over this amount need a human: refused for good (dead-lettered, not retried).
const LIMIT: f64 = 10_000.0;

#[kafka_handler(topic = "orders.created", retry(max = 5), dlq, concurrency = 8)]
async fn on_order_created(order: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
    if order.amount > LIMIT {
        return Err(HandlerError::permanent(format!("amount {} is over the {LIMIT} limit", order.amount)));
    }
    let accepted = OrderAccepted { id: order.id, customer: order.customer };
    let publisher = ctx.publisher().ok_or_else(|| HandlerError::retryable("no publisher"))?;
    // An error here (broker unreachable) is retryable: the order comes back through the retry topic.
    publisher.publish_with("orders.accepted", &accepted, PublishOptions::new().key(&accepted.customer)).await?;
    Ok(())
}

#[kafka_handler(topic = "orders.accepted", retry(max = 3, mode = "in_place"), dlq)]
async fn send_confirmation(order: OrderAccepted, ctx: MessageContext) -> Result<(), HandlerError> {
    tracing::info!(order = %order.id, customer = %order.customer, correlation = ?ctx.correlation_id(), "confirmation sent");
    Ok(())
}

#[tokio::main]
pub async fn main() -> Result<(), kafka_events::Error> {
    kafka_events::runtime::start(Config::from_env()?).await
}
