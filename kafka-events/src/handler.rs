//! What a handler is: its registration, the context it receives and the error it returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::retry::RetrySpec;

/// A boxed handler future.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// Decodes and validates a payload, then returns the handler's future (not started yet) and the
/// event's id from the payload field `idempotent(id = "...")` names, if it names one.
#[doc(hidden)]
pub type InvokeFn = fn(Option<&[u8]>, MessageContext) -> Result<Invocation, InputError>;

/// What [`InvokeFn`] returns.
#[doc(hidden)]
pub struct Invocation {
    pub(crate) future: HandlerFuture,
    pub(crate) event_id: Option<String>,
}

/// One decoded and validated event of a batch, typed by the generated code only.
#[doc(hidden)]
pub struct Decoded {
    pub(crate) event: Box<dyn std::any::Any + Send>,
    pub(crate) event_id: Option<String>,
}

/// Decodes and validates one message of a batch.
#[doc(hidden)]
pub type DecodeFn = fn(Option<&[u8]>) -> Result<Decoded, InputError>;

/// Calls a batch handler with events its [`DecodeFn`] decoded.
#[doc(hidden)]
pub type BatchCallFn = fn(Vec<Decoded>, BatchContext) -> HandlerFuture;

/// `batch(max = N, linger = "...")`: the handler takes up to `max` events at once, waiting up to
/// `linger` after the first for the batch to fill.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    pub max: u32,
    pub linger_ms: u64,
    pub decode: DecodeFn,
    pub call: BatchCallFn,
}

/// Where a handler's dead letters go.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqSpec {
    /// No `dlq`: a message whose retries are exhausted stalls its partition.
    Disabled,
    /// `dlq`: `<topic><dlq suffix>`.
    Default,
    /// `dlq = "topic"`.
    Topic(&'static str),
}

/// One `#[kafka_handler]`, as registered by the attribute. Built in `const` context by the
/// generated code; read by the runtime through [`crate::registry`].
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerRegistration {
    pub(crate) name: &'static str,
    pub(crate) module_path: &'static str,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) topic: &'static str,
    pub(crate) retry: Option<RetrySpec>,
    pub(crate) dlq: DlqSpec,
    pub(crate) concurrency: u32,
    pub(crate) keyless: Keyless,
    pub(crate) circuit: Option<crate::circuit::CircuitSpec>,
    pub(crate) provision: Option<ProvisionSpec>,
    pub(crate) invoke: InvokeFn,
    pub(crate) batch: Option<BatchSpec>,
    pub(crate) idempotent: bool,
    pub(crate) transactional: bool,
    /// `timeout = "..."`: the longest one call may take, in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
}

/// `provision(partitions = N, retention = "...", cleanup = "...")`: how the handler's topic is
/// created when it does not exist; unset fields take the configured defaults.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProvisionSpec {
    pub partitions: Option<i32>,
    pub retention_ms: Option<u64>,
    pub cleanup: Option<&'static str>,
}

/// How a handler with `concurrency` above 1 orders messages that have no key.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyless {
    /// `keyless = "ordered"` (the default): the keyless messages of a partition are one
    /// sequence, handled one at a time in offset order, as if they shared a key.
    Ordered,
    /// `keyless = "unordered"`: keyless messages may run at the same time as each other.
    Unordered,
}

impl HandlerRegistration {
    /// A registration without `retry(...)` and without `dlq`.
    pub const fn new(
        name: &'static str,
        module_path: &'static str,
        file: &'static str,
        line: u32,
        topic: &'static str,
        invoke: InvokeFn,
    ) -> Self {
        Self {
            name,
            module_path,
            file,
            line,
            topic,
            retry: None,
            dlq: DlqSpec::Disabled,
            concurrency: 1,
            keyless: Keyless::Ordered,
            circuit: None,
            provision: None,
            invoke,
            batch: None,
            idempotent: false,
            transactional: false,
            timeout_ms: None,
        }
    }

    /// Sets `timeout = "..."` (milliseconds).
    pub const fn timeout(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Makes it a batch handler (`batch(...)`).
    pub const fn batch(mut self, batch: BatchSpec) -> Self {
        self.batch = Some(batch);
        self
    }

    /// Sets `idempotent`.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sets `transactional`.
    pub const fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// Sets `provision(...)`.
    pub const fn provision(mut self, provision: ProvisionSpec) -> Self {
        self.provision = Some(provision);
        self
    }

    /// Sets `circuit(...)`.
    pub const fn circuit(mut self, circuit: crate::circuit::CircuitSpec) -> Self {
        self.circuit = Some(circuit);
        self
    }

    /// Sets `concurrency = N` (messages of one partition handled at once, never two of one key)
    /// and how keyless messages are ordered.
    pub const fn concurrency(mut self, max: u32, keyless: Keyless) -> Self {
        self.concurrency = max;
        self.keyless = keyless;
        self
    }

    /// Sets the retry policy written in the attribute.
    pub const fn retry(mut self, retry: RetrySpec) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets where dead letters go.
    pub const fn dlq(mut self, dlq: DlqSpec) -> Self {
        self.dlq = dlq;
        self
    }

    /// `module::path::fn_name`.
    pub fn qualified_name(&self) -> String {
        format!("{}::{}", self.module_path, self.name)
    }

    /// Where the handler is declared: `module::path::fn_name (src/file.rs:12)`.
    pub fn site(&self) -> String {
        format!("{} ({}:{})", self.qualified_name(), self.file, self.line)
    }
}

/// Everything about the message being handled except its payload.
///
/// Topic, partition and offset are where the message was first consumed: a message retried
/// through the retry topic reports its original coordinates (from its `x-original-*` headers),
/// so they identify the event across attempts.
#[derive(Debug, Clone)]
pub struct MessageContext {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
    pub(crate) attempt: u32,
    pub(crate) trace: crate::trace::TraceContext,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) claim: crate::idempotency::ClaimSlot,
    pub(crate) publisher: Option<crate::Publisher>,
}

impl MessageContext {
    /// The database transaction of an `idempotent` handler on the PostgreSQL store: what the
    /// handler writes through it commits together with the event's `processed_events` row when
    /// it returns `Ok`, and is rolled back otherwise — a redelivered event has no effect twice.
    ///
    /// ```ignore
    /// let mut tx = ctx.transaction()?;
    /// sqlx::query("INSERT INTO payments (id, amount) VALUES ($1, $2)")
    ///     .bind(&event.id).bind(event.amount)
    ///     .execute(&mut *tx).await?;
    /// ```
    ///
    /// A permanent error when the handler is not `idempotent` or the store is not PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn transaction(&self) -> Result<crate::idempotency::DbTransaction, HandlerError> {
        crate::idempotency::DbTransaction::borrow(&self.claim)
    }

    /// The publisher for what this handling produces. In a `transactional` handler its records
    /// join the handling's Kafka transaction: they become visible to `read_committed` consumers
    /// together with the input's offset commit, or never. Elsewhere it is the runtime's shared
    /// publisher.
    pub fn publisher(&self) -> Option<&crate::Publisher> {
        self.publisher.as_ref()
    }

    /// The topic the message was consumed from.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }
    /// Its offset in that partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }
    /// Its timestamp in milliseconds since the epoch, when the broker gave one.
    pub fn timestamp_millis(&self) -> Option<i64> {
        self.timestamp
    }
    /// Its key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    /// Its key as UTF-8, if it has one and it is valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }
    /// Every header in wire order; a header may have no value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }
    /// The value of the last header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
    }
    /// The value of the last header called `name`, as UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
    /// Which attempt this is: 1 for the first delivery, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The message's `x-message-id`, if it has one.
    pub fn message_id(&self) -> Option<&str> {
        self.header_str(crate::names::header::MESSAGE_ID)
    }
    /// The message's `x-correlation-id`, if it has one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.header_str(crate::names::header::CORRELATION_ID)
    }
    /// The trace context of this handling: the trace of the message's `traceparent` header (a
    /// new trace when it has none) with a span of its own. Messages published while the handler
    /// runs carry it as their parent.
    pub fn trace(&self) -> &crate::trace::TraceContext {
        &self.trace
    }
}

/// Why a message failed, as written to `x-dlq-error-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The payload is not valid JSON for the handler's type (or is missing). Never retried.
    Decode,
    /// The payload decoded but failed `Validate`. Never retried.
    Validation,
    /// The handler returned a permanent error. Never retried.
    Permanent,
    /// The handler kept returning retryable errors (or panicking) until its retries ran out.
    RetriesExhausted,
    /// An `idempotent` handler got a message with no event id (no `x-message-id` header, or the
    /// id field is empty). Never retried.
    MissingEventId,
    /// A `transactional` handler's producer was fenced by a newer instance with the same
    /// `transactional.id`: the partition belongs to another instance now. Never retried nor
    /// dead-lettered: the message waits here (reported as stalled) until the rebalance revokes
    /// the partition, and its new owner handles it.
    Fenced,
    /// The message's retry record could not be published because, with its payload, it is
    /// larger than the producer or broker accepts: it was dead-lettered instead of retried. As
    /// a stall kind: neither its retry record nor its dead letter can be published (the broker
    /// refuses them for good: authorization, unknown topic, too large without a `dlq`); the
    /// partition is held at it, reported, and the publish tried again every 30 s.
    Undeliverable,
    /// The handler kept exceeding its time limit (`timeout = "..."` or `KAFKA_HANDLER_TIMEOUT`)
    /// until its retries ran out; each call over the limit was cancelled.
    Timeout,
}

impl ErrorKind {
    /// The stable name written to `x-dlq-error-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Validation => "validation",
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries-exhausted",
            Self::MissingEventId => "missing-event-id",
            Self::Fenced => "fenced",
            Self::Undeliverable => "undeliverable",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload that could not be turned into the handler's input. Always permanent.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub(crate) kind: ErrorKind,
    pub(crate) reason: String,
}

impl InputError {
    pub(crate) fn decode(reason: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Decode, reason: reason.into() }
    }
    pub(crate) fn validation(reason: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Validation, reason: reason.into() }
    }
    pub(crate) fn missing_id(reason: impl Into<String>) -> Self {
        Self { kind: ErrorKind::MissingEventId, reason: reason.into() }
    }
}

/// The error a handler returns. It carries what should happen next: try again, or give up.
///
/// How failures are classified:
///
/// | failure | classified as | why |
/// |---|---|---|
/// | any `std::error::Error + Send + Sync + 'static` through `?` (I/O, timeouts, database and HTTP client errors) | retryable | most errors a handler meets pass |
/// | `.permanent()?` ([`ResultExt`]) or [`HandlerError::permanent`] | permanent | no retry can fix it: a business rule said no, data inside the event is unusable |
/// | `.retryable()?` or [`HandlerError::retryable`] | retryable | explicit |
/// | a panic in the handler | retryable | a bug may depend on state that changes; retries are bounded |
/// | the event is not valid JSON for its type, or fails `Validate` | permanent, before the handler runs | the same bytes fail the same way every time |
///
/// ```
/// use kafka_events::HandlerError;
///
/// fn check(amount: f64) -> Result<(), HandlerError> {
///     if amount > 10_000.0 {
///         return Err(HandlerError::permanent(format!("amount {amount} is over the limit")));
///     }
///     let _n: u32 = "42".parse()?; // a ParseIntError would be retryable
///     Ok(())
/// }
/// assert!(check(20_000.0).unwrap_err().is_permanent());
/// ```
pub struct HandlerError {
    retryable: bool,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl HandlerError {
    /// An error worth trying again (the handler is invoked again after a backoff).
    pub fn retryable(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self { retryable: true, source: error.into() }
    }

    /// An error no retry can fix: the message goes to the dead-letter topic at once.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self { retryable: false, source: error.into() }
    }

    /// Whether the handler should be invoked again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the message should be dead-lettered at once.
    pub fn is_permanent(&self) -> bool {
        !self.retryable
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError").field("retryable", &self.retryable).field("source", &self.source).finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

/// Classifies the error of any `Result` on the spot:
/// `repository.save(&order).await.retryable()?`, `parse_sku(&event.sku).permanent()?`.
pub trait ResultExt<T> {
    /// The error, if any, becomes a [`HandlerError::permanent`].
    fn permanent(self) -> Result<T, HandlerError>;
    /// The error, if any, becomes a [`HandlerError::retryable`].
    fn retryable(self) -> Result<T, HandlerError>;
}

impl<T, E> ResultExt<T> for Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::permanent)
    }
    fn retryable(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::retryable)
    }
}

impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        Self::retryable(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_is_retryable_and_permanent_is_not() {
        fn io() -> Result<(), HandlerError> {
            Err(std::io::Error::other("disk"))?
        }
        let err = io().unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.to_string(), "disk");
        assert!(HandlerError::permanent("no").is_permanent());
        let parsed: Result<u32, HandlerError> = "x".parse::<u32>().permanent();
        assert!(parsed.unwrap_err().is_permanent());
        let io: Result<(), HandlerError> = Err::<(), _>(std::io::Error::other("down")).retryable();
        assert!(io.unwrap_err().is_retryable());
    }

    #[test]
    fn context_reads_headers() {
        let ctx = MessageContext {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            timestamp: None,
            key: Some(b"k".to_vec()),
            headers: vec![("a".into(), Some(b"1".to_vec())), ("a".into(), Some(b"2".to_vec())), ("n".into(), None)],
            attempt: 1,
            trace: crate::trace::TraceContext::new_root(),
            claim: Default::default(),
            publisher: None,
        };
        assert_eq!(ctx.header_str("a"), Some("2"));
        assert_eq!(ctx.header("n"), None);
        assert_eq!(ctx.key_str(), Some("k"));
        assert_eq!(ctx.headers().count(), 3);
    }
}

/// What a batch handler (`#[kafka_handler(topic = "...", batch(max = 500, linger = "100ms"))]`)
/// receives beside its events: the context of each, in the same order.
///
/// A batch holds messages of one partition, in offset order. Messages that fail decoding or
/// validation were dead-lettered individually and are not in it; with `idempotent`, neither are
/// events already processed.
#[derive(Debug, Clone)]
pub struct BatchContext {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) messages: Vec<MessageContext>,
    pub(crate) attempt: u32,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) claim: crate::idempotency::ClaimSlot,
}

impl BatchContext {
    /// The topic the batch was consumed from.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }
    /// The context of each event, in the order of the events.
    pub fn messages(&self) -> &[MessageContext] {
        &self.messages
    }
    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.messages.len()
    }
    /// Whether it holds none (never, when the handler is called).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
    /// Which attempt at this batch this is: 1 first, 2 after one failure, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The database transaction of an `idempotent` batch handler on the PostgreSQL store: the
    /// rows the handler writes through it commit together with the batch's `processed_events`
    /// rows when it returns `Ok`; see [`MessageContext::transaction`].
    #[cfg(feature = "postgres")]
    pub fn transaction(&self) -> Result<crate::idempotency::DbTransaction, HandlerError> {
        crate::idempotency::DbTransaction::borrow(&self.claim)
    }
}
