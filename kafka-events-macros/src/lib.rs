//! The `#[kafka_handler]` attribute of [kafka-events](https://docs.rs/kafka-events). Use it
//! through `kafka_events::kafka_handler`; this crate only parses, checks and registers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Registers an `async fn` as the handler of a Kafka topic.
///
/// ```text
/// #[kafka_handler(topic = "orders.created")]
/// #[kafka_handler(topic = "orders.created", retry(max = 5, backoff = "exponential", initial = "200ms", max_delay = "30s"), dlq)]
/// #[kafka_handler(topic = "orders.created", dlq = "orders.failed")]
/// #[kafka_handler(topic = "orders.created", concurrency = 50, keyless = "unordered")]
/// ```
///
/// `concurrency = N` (1 to 10,000, default 1) handles up to N messages of one partition at once,
/// never two with the same key and each key in offset order; keyless messages are one ordered
/// sequence unless `keyless = "unordered"`.
///
/// `idempotent` skips events already recorded in the idempotency store (id: the `x-message-id`
/// header, or the payload field `idempotent(id = "field")` names). `batch(max = N, linger = "...")`
/// makes it a batch handler: it takes `Vec<T>` and a `BatchContext`, and needs `dlq`.
/// `transactional` commits what it publishes through `ctx.publisher()` and the input offset in one
/// Kafka transaction; it does not combine with `idempotent`, `batch` or `concurrency`.
///
/// ```text
/// #[kafka_handler(topic = "payments", idempotent(id = "payment_id"), dlq)]
/// #[kafka_handler(topic = "sensor_metrics", batch(max = 500, linger = "100ms"), idempotent, dlq)]
/// #[kafka_handler(topic = "orders", transactional, dlq)]
/// ```
///
/// The fn takes the event (any `T: Deserialize + Validate`) and optionally a `MessageContext`,
/// and returns `Result<(), E>` with `E: Into<HandlerError>`. See the `kafka_events` crate docs.
#[proc_macro_attribute]
pub fn kafka_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
