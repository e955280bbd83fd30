//! The `#[kafka_handler]` attribute of [kafka-events](https://docs.rs/kafka-events). Use it
//! through `kafka_events::kafka_handler`; this crate only parses, checks and registers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attr;
mod ctxt;
mod expand;

use proc_macro::TokenStream;

/// Registers an `async fn` as the handler of a Kafka topic.
///
/// The fn is a free `async fn` (at module level, not an associated fn inside an `impl` block).
///
/// The fn takes the event (any `T: serde::Deserialize + validator::Validate`, decoded from JSON
/// and validated before the handler runs) and optionally a `MessageContext` (by value), and
/// returns `Result<(), E>` where `E` converts into `HandlerError` (`HandlerError` itself, any
/// `std::error::Error + Send + Sync`, `anyhow::Error`, `Box<dyn Error + Send + Sync>`).
/// `runtime::start` finds every handler of the program; nothing else registers it.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `topic = "orders.created"` | the topic it consumes (a string literal; `KAFKA_TOPIC_PREFIX` prefixes it per environment) | required |
/// | `retry(max = N)` | how many times a failed message is tried *again* after its first attempt (0 to 100) | `KAFKA_RETRY_MAX` (3) |
/// | `retry(backoff = "exponential" \| "linear" \| "fixed")` | delay before retry n: `initial × 2^(n−1)`, `initial × n`, `initial` | `"exponential"` |
/// | `retry(initial = "200ms", max_delay = "30s")` | the first delay and the cap | `200ms`, `30s` |
/// | `retry(jitter = 0.1)` | delays move at random by up to this fraction either way (0 to 1) | `0.1` |
/// | `retry(mode = "topic" \| "in_place")` | retry through `<topic>.retry` (the partition goes on) or in the partition's lane (it waits, order kept) | `"topic"` |
/// | `dlq` / `dlq = "orders.failed"` | exhausted or permanent failures go to `<topic>.dlq` (or the topic named). **Without `dlq`** a failed message is never dropped: its partition stalls at it, is retried every `max_delay`, and `health()` reports it | none |
/// | `concurrency = N` | up to N messages of one partition at once, never two of one key, each key in order (1 to 10,000) | 1 |
/// | `keyless = "ordered" \| "unordered"` | with `concurrency`: keyless messages one ordered sequence, or in parallel | `"ordered"` |
/// | `circuit(failures = 5, reset = "30s")` | after N consecutive failed calls the handler's partitions pause for `reset`, then one trial call | `KAFKA_CIRCUIT_*` (off) |
/// | `provision(partitions = 12, retention = "30days", cleanup = "compact")` | how its topic is created when provisioning is on | the configured topic defaults |
/// | `idempotent` / `idempotent(id = "payment_id")` | skip events already recorded in the idempotency store (id: `x-message-id`, or the payload field) | off |
/// | `batch(max = 500, linger = "100ms")` | a batch handler: takes `Vec<T>` and a `BatchContext`; needs `dlq`; retries the batch in place | off |
/// | `transactional` | what it publishes through `ctx.publisher()` and its input offset commit in one Kafka transaction | off |
/// | `timeout = "10s"` | the longest one call may take; a call over it is cancelled and retried (kind `timeout`) | `KAFKA_HANDLER_TIMEOUT` (none) |
///
/// ```no_run
/// use kafka_events::prelude::*;
/// use serde::Deserialize;
/// use validator::Validate;
///
/// #[derive(Deserialize, Validate)]
/// struct OrderCreated {
///     #[validate(length(min = 1))]
///     id: String,
/// }
///
/// #[kafka_handler(topic = "orders.created", retry(max = 5, backoff = "exponential", initial = "1s", max_delay = "30s", jitter = 0.1, mode = "topic"), dlq)]
/// async fn on_order(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
///     println!("{} at {}[{}]@{}, attempt {}", event.id, ctx.topic(), ctx.partition(), ctx.offset(), ctx.attempt());
///     Ok(())
/// }
///
/// #[kafka_handler(topic = "payments", concurrency = 50, keyless = "unordered", circuit(failures = 5, reset = "30s"), dlq = "payments.failed")]
/// async fn on_payment(event: OrderCreated) -> anyhow::Result<()> {
///     Ok(())
/// }
///
/// #[kafka_handler(topic = "ledger", provision(partitions = 12, retention = "30days", cleanup = "compact"), idempotent(id = "id"), timeout = "10s", dlq)]
/// async fn on_ledger(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
///     Ok(())
/// }
///
/// #[kafka_handler(topic = "readings", batch(max = 500, linger = "100ms"), dlq)]
/// async fn on_readings(events: Vec<OrderCreated>, ctx: BatchContext) -> Result<(), HandlerError> {
///     Ok(())
/// }
///
/// #[kafka_handler(topic = "orders.accepted", transactional, dlq)]
/// async fn forward(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
///     if let Some(publisher) = ctx.publisher() {
///         publisher.publish("orders.forwarded", &serde_json::json!({ "id": event.id })).await?;
///     }
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), kafka_events::Error> {
///     kafka_events::runtime::start(Config::from_env()?).await
/// }
/// ```
///
/// Misuse is a compile error spanned on the offending token that says the fix (each pinned by a
/// case in the repository's `tests/ui/fail/`).
#[proc_macro_attribute]
pub fn kafka_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
