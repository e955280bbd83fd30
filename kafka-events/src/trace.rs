//! W3C trace context (`traceparent`) across Kafka: the processor reads it from each message's
//! headers (or starts a trace), records `trace_id` and `span_id` on the message's span, and makes
//! it current while the handler runs; the [`Publisher`](crate::publisher::Publisher) writes it on
//! every message it sends — continuing the current handler's trace, or starting one — so a chain
//! of handlers is one trace.

/// The `traceparent` header ([`names::header::TRACEPARENT`](crate::names::header::TRACEPARENT)).
pub use crate::names::header::TRACEPARENT;

/// One span's W3C trace context: `00-<trace id>-<span id>-<flags>`. The ids are kept as their
/// lowercase hex digits inline (every consumed message gets one: no allocation).
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    sampled: bool,
}

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id())
            .field("span_id", &self.span_id())
            .field("sampled", &self.sampled)
            .finish()
    }
}

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

/// The lowercase hex digits of `bytes` (`N` = 2 × its length).
fn hex<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [b'0'; N];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
    out
}

/// A random non-zero id of `N` bytes (W3C: an all-zero id is invalid): one or two draws of
/// `fastrand`'s generator, not a range sample.
fn random_id<const N: usize>() -> [u8; N] {
    let mut id = [0; N];
    while id.iter().all(|b| *b == 0) {
        for chunk in id.chunks_mut(8) {
            chunk.copy_from_slice(&fastrand::u64(..).to_ne_bytes()[..chunk.len()]);
        }
    }
    id
}

/// `id`'s bytes as an inline id, when it has exactly `N` of them.
#[cfg(feature = "otel")]
fn inline<const N: usize>(id: &str) -> Option<[u8; N]> {
    id.as_bytes().try_into().ok()
}

/// The id's digits (always ASCII hex).
fn digits(id: &[u8]) -> &str {
    std::str::from_utf8(id).unwrap_or_default()
}

/// `id` as an inline id, when it is `N` lowercase hex digits, not all zero.
fn hex_id<const N: usize>(id: &[u8]) -> Option<[u8; N]> {
    let valid = id.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) && id.iter().any(|b| *b != b'0');
    valid.then(|| id.try_into().ok()).flatten()
}

/// The trace context a consumed message carries in its `traceparent` header, when valid.
pub(crate) fn parent_of(message: &impl crate::message::Consumed) -> Option<TraceContext> {
    crate::message::header_str(message, TRACEPARENT).and_then(TraceContext::parse)
}

/// A new span continuing `parent`'s trace, or the root of a new trace when there is none.
pub(crate) fn child_of(parent: Option<TraceContext>) -> TraceContext {
    parent.map_or_else(TraceContext::new_root, |parent| parent.child())
}

impl TraceContext {
    /// Parses a `traceparent` value; `None` when it is not a valid version-00 header.
    pub fn parse(traceparent: &str) -> Option<Self> {
        // Version 00 is exactly `00-` + 32 hex digits + `-` + 16 + `-` + 2 (every consumed
        // message with a `traceparent` is parsed: by position, not by splitting).
        let traceparent = traceparent.trim();
        let b = traceparent.as_bytes();
        if b.len() != 55 || !b.starts_with(b"00-") || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        // Two hex digits (`from_str_radix` alone would take a sign).
        let flags = traceparent.get(53..).filter(|f| f.bytes().all(|b| b.is_ascii_hexdigit()))?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self { trace_id: hex_id(&b[3..35])?, span_id: hex_id(&b[36..52])?, sampled: flags & 1 == 1 })
    }

    /// A new trace with a new span.
    pub fn new_root() -> Self {
        Self { trace_id: hex(&random_id::<16>()), span_id: new_span_id(), sampled: true }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id, span_id: new_span_id(), sampled: self.sampled }
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        digits(&self.trace_id)
    }

    /// The 16-hex-digit span id.
    pub fn span_id(&self) -> &str {
        digits(&self.span_id)
    }

    /// Whether the trace is sampled (flag `01`).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    #[cfg(feature = "otel")]
    pub(crate) fn from_parts(trace_id: &str, span_id: &str, sampled: bool) -> Option<Self> {
        Some(Self { trace_id: inline(trace_id)?, span_id: inline(span_id)?, sampled })
    }

    /// The `traceparent` header value naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id(), self.span_id(), u8::from(self.sampled))
    }
}

fn new_span_id() -> [u8; 16] {
    hex(&random_id::<8>())
}

/// What a message's task carries while it is processed: its trace context, the correlation id
/// of its input (what its handler publishes carries both) and, under the default log
/// subscriber, its coordinates for log lines ([`crate::logging`]). One task-local: each scope
/// costs a thread-local swap on every poll of the future it wraps.
struct Handling {
    trace: TraceContext,
    correlation: Option<String>,
    message: Option<Coordinates>,
}

/// Where a message being processed came from, as the default subscriber's lines show it.
#[derive(Debug, Clone)]
pub(crate) struct Coordinates {
    pub(crate) labels: std::sync::Arc<Labels>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) attempt: std::cell::Cell<u32>,
    pub(crate) outcome: std::cell::Cell<Option<&'static str>>,
}

/// What is the same for every message of a lane.
#[derive(Debug)]
pub(crate) struct Labels {
    /// Shared by every message of the lane (their contexts point at it, not at a copy each).
    pub(crate) topic: std::sync::Arc<str>,
    pub(crate) handler: String,
}

tokio::task_local! {
    static CURRENT: Handling;
}

/// The trace context of the handler running on this task, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|handling| handling.trace.clone()).ok()
}

/// The correlation id of the message the handler running on this task handles, if any.
pub(crate) fn correlation() -> Option<String> {
    CURRENT.try_with(|handling| handling.correlation.clone()).ok().flatten()
}

/// Calls `f` with the trace context and coordinates of the message this task processes, when
/// its coordinates are carried (under the default log subscriber).
pub(crate) fn with_message<R>(f: impl FnOnce(&TraceContext, &Coordinates) -> R) -> Option<R> {
    CURRENT.try_with(|handling| handling.message.as_ref().map(|message| f(&handling.trace, message))).ok().flatten()
}

/// Runs `future` with `trace` as the current trace context, `correlation` as the id its
/// publishes carry and `message` as the coordinates its log lines show.
pub(crate) fn scope<F: std::future::Future>(
    trace: TraceContext,
    correlation: Option<String>,
    message: Option<Coordinates>,
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    // The task-local's own future, not an `async fn` around it: each async layer stores the
    // future it awaits once more.
    CURRENT.scope(Handling { trace, correlation, message }, future)
}

/// `future` in a copy of this task's scope (trace context, correlation id, coordinates), for work
/// that outlives the task's current message (a publish acknowledged later); as it is without one.
pub(crate) fn carried<T: 'static>(
    future: std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> {
    let copy = CURRENT
        .try_with(|handling| Handling {
            trace: handling.trace.clone(),
            correlation: handling.correlation.clone(),
            message: handling.message.clone(),
        })
        .ok();
    match copy {
        Some(handling) => Box::pin(CURRENT.scope(handling, future)),
        None => future,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_children() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceContext::parse(header).unwrap();
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.traceparent(), header);
        let child = parsed.child();
        assert_eq!(child.trace_id(), parsed.trace_id());
        assert_ne!(child.span_id(), parsed.span_id());
        let root = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&root.traceparent()), Some(root));
    }

    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }
}
