//! # kafka-events
//!
//! Typed Kafka event handlers declared with an attribute, driven by one shared processor that
//! decodes (serde), validates (validator), runs the handler, and then commits, retries or
//! dead-letters — with offsets committed only once an outcome is durable.
//!
//! ```no_run
//! use kafka_events::prelude::*;
//! use serde::Deserialize;
//! use validator::Validate;
//!
//! #[derive(Debug, Deserialize, Validate)]
//! struct OrderCreated {
//!     #[validate(length(min = 1))]
//!     id: String,
//!     #[validate(range(min = 0.01))]
//!     amount: f64,
//! }
//!
//! #[kafka_handler(topic = "orders.created", retry(max = 3), dlq)]
//! async fn on_order(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
//!     println!("order {} for {} at offset {}", event.id, event.amount, ctx.offset());
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), kafka_events::Error> {
//!     kafka_events::runtime::start(Config::from_env()?).await
//! }
//! ```
//!
//! ## What happens to a message
//!
//! | result | outcome |
//! |---|---|
//! | handler returns `Ok(())` | offset finished |
//! | payload is not valid JSON for the type, or a tombstone | dead-lettered at once (`x-dlq-error-kind: decode`) |
//! | payload fails `Validate` | dead-lettered at once (`validation`) |
//! | [`HandlerError::permanent`] | dead-lettered at once (`permanent`) |
//! | [`HandlerError::retryable`], any `?`-converted error, or a panic | retried with backoff up to `retry(max = N)` — through `<topic>.retry` and the `${SERVICE_NAME}-retry` group (default, `mode = "topic"`) or in place (`mode = "in_place"`) — then dead-lettered (`retries-exhausted`) |
//! | a final failure in a handler **without** `dlq` | the partition stalls at that message: it is retried every `max_delay`, nothing after it is processed, [`Runtime::health`](runtime::Runtime::health) reports it; nothing is dropped |
//!
//! `#[kafka_handler(topic = "...", concurrency = 50)]` handles up to 50 messages of a partition
//! at once, never two of one key, each key in offset order. Messages polled and not yet
//! committed are capped per partition (`KAFKA_PARTITION_BUFFER`) and per consumer group member
//! (`KAFKA_MAX_BUFFERED`); a partition over its cap is paused until it drains.
//!
//! `idempotent` handlers skip events already processed, recorded in memory or in PostgreSQL's
//! `processed_events` — with PostgreSQL in the same transaction as the handler's own writes
//! ([`MessageContext::transaction`]); see [`idempotency`]. `batch(max = N, linger = "...")`
//! handlers take `Vec<T>` and a [`BatchContext`]. `transactional` handlers publish through
//! [`MessageContext::publisher`] in a Kafka transaction that also commits the input offset.
//!
//! An offset is committed only after its message was handled or its dead letter acknowledged by
//! the broker; commits happen every `KAFKA_COMMIT_INTERVAL`, when partitions are revoked, and on
//! shutdown. Delivery is at-least-once: after a crash, messages processed since the last commit
//! are processed again.
//!
//! ## Misuse is a compile error
//!
//! ```compile_fail
//! use kafka_events::prelude::*;
//! # #[derive(serde::Deserialize, validator::Validate)] struct E {}
//! // error: `#[kafka_handler]` requires an `async fn`
//! #[kafka_handler(topic = "orders")]
//! fn not_async(event: E) -> Result<(), HandlerError> { Ok(()) }
//! ```
//! The fix: write `async fn not_async(...)`.
// `unsafe` only in `native.rs` (reading a partition's queue a run at a time through librdkafka's
// C API), which allows it for itself; everywhere else it is an error.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod abi;
pub mod circuit;
mod client_context;
pub mod config;
mod connection;
mod consumer;
pub mod describe;
mod describe_format;
pub mod dlq;
pub mod embedded;
mod error;
mod error_kind;
pub mod handler;
pub mod health;
mod http;
pub mod idempotency;
pub mod logging;
mod message;
pub mod metrics;
pub mod names;
mod native;
mod observe;
#[cfg(feature = "otel")]
pub mod otel;
pub mod problems;
mod processor;
mod provisioning;
pub mod publisher;
mod records;
pub mod registry;
pub mod retry;
pub mod runtime;
mod schema;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

pub use config::{Config, ConfigError, GroupProtocol, Profile};
pub use error::{Error, ProvisioningProblem};
pub use error_kind::ErrorKind;
pub use handler::{BatchContext, HandlerError, IntoHandlerError, MessageContext, ResultExt};
pub use kafka_events_macros::kafka_handler;
pub use problems::{Problem, Problems};
pub use processor::Event;
pub use publisher::{Delivery, PublishError, PublishOptions, Publisher};
pub use retry::{Backoff, RetryMode, RetryPolicy};
pub use runtime::Runtime;
/// sqlx, as the PostgreSQL idempotency store uses it (feature `postgres`): write through
/// [`MessageContext::transaction`] with the same version.
#[cfg(feature = "postgres")]
pub use sqlx;

/// The names a handler module needs: `use kafka_events::prelude::*;`.
pub mod prelude {
    pub use crate::{
        kafka_handler, BatchContext, Config, HandlerError, MessageContext, PublishOptions, Publisher, ResultExt,
        Runtime,
    };
}

/// Used by the code `#[kafka_handler]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::{
        BatchCallFn, BatchSpec, DecodeFn, Decoded, DlqSpec, EventSpec, HandlerRegistration, Invocation, InvokeFn,
        Keyless, ProvisionSpec, Shape,
    };
    pub use crate::circuit::CircuitSpec;
    pub use crate::processor::{call_batch, decode, invoke, HandlerOutput};
    pub use crate::retry::{Backoff, RetryMode, RetrySpec};
    pub use crate::schema::{SchemaFallback, SchemaFn, SchemaOf, SchemaProbe};
    pub use inventory;
}
