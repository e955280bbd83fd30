//! What a handler receives and returns: the context of its message (or batch) and its error.

use std::fmt;

/// Everything about the message being handled except its payload.
///
/// Topic, partition and offset are where the message was first consumed: a message retried
/// through the retry topic reports its original coordinates (from its `x-original-*` headers),
/// so they identify the event across attempts.
#[derive(Debug, Clone)]
pub struct MessageContext {
    /// Shared with the lane (a message retried through the retry topic: its original topic).
    pub(crate) topic: std::sync::Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
    /// Kept inline up to 32 bytes (ids, UUIDs): no allocation per message for the usual key.
    pub(crate) key: Option<crate::message::Key>,
    pub(crate) headers: crate::message::HeaderCopy,
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
        crate::idempotency::DbTransaction::borrow(&self.claim).map_err(HandlerError::permanent)
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
        self.headers.iter()
    }
    /// The value of the last header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.last(name)
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

/// The error a handler returns. It carries what should happen next: try again, or give up.
///
/// How failures are classified:
///
/// | failure | classified as | why |
/// |---|---|---|
/// | any `std::error::Error + Send + Sync + 'static` through `?` (I/O, timeouts, database and HTTP client errors), `anyhow::Error`, `Box<dyn Error + Send + Sync>`, or a handler returning `anyhow::Result<()>` | retryable | most errors a handler meets pass |
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

/// The error, then each of its causes not already in the text, separated by `: ` (`loading
/// order 42: connection refused` for an `anyhow` error with context).
impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.source.to_string();
        let mut cause = self.source.source();
        while let Some(error) = cause {
            let more = error.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = error.source();
        }
        f.write_str(&text)
    }
}

/// What a handler's error type `E` in `Result<(), E>` must be: [`HandlerError`], or anything
/// that converts into `Box<dyn Error + Send + Sync>` — any `std::error::Error + Send + Sync +
/// 'static`, `anyhow::Error`, `Box<dyn Error + Send + Sync>`, `String` — which is retryable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's error type",
    label = "a handler returns `Result<(), E>` where `E` is `HandlerError` or an error type",
    note = "implement `std::error::Error` for `{Self}`, return `anyhow::Error`, or return `HandlerError` (`HandlerError::permanent(..)`, `HandlerError::retryable(..)`)"
)]
pub trait IntoHandlerError {
    /// The error as the processor sees it.
    fn into_handler_error(self) -> HandlerError;
}

impl IntoHandlerError for HandlerError {
    fn into_handler_error(self) -> HandlerError {
        self
    }
}

impl<E> IntoHandlerError for E
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn into_handler_error(self) -> HandlerError {
        HandlerError::retryable(self)
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

/// Every error `?` meets: any `std::error::Error + Send + Sync + 'static`, `anyhow::Error`,
/// `Box<dyn Error + Send + Sync>`, a `String` or `&str` — all retryable.
impl<E> From<E> for HandlerError
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
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
            key: Some(b"k".as_slice().into()),
            headers: [("a", Some(&b"1"[..])), ("a", Some(&b"2"[..])), ("n", None)].into_iter().collect(),
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
        crate::idempotency::DbTransaction::borrow(&self.claim).map_err(HandlerError::permanent)
    }
}
