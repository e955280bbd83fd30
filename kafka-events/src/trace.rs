//! W3C trace context (`traceparent`) across Kafka: the processor reads it from each message's
//! headers (or starts a trace), records `trace_id` and `span_id` on the message's span, and makes
//! it current while the handler runs; the [`Publisher`](crate::publisher::Publisher) writes it on
//! every message it sends — continuing the current handler's trace, or starting one — so a chain
//! of handlers is one trace.

/// The `traceparent` header ([`names::header::TRACEPARENT`](crate::names::header::TRACEPARENT)).
pub use crate::names::header::TRACEPARENT;

/// One span's W3C trace context: `00-<trace id>-<span id>-<flags>`. The ids are kept as bytes
/// inline (every consumed message gets one: no allocation) and spelt in lowercase hex only when
/// something asks for them — a log line, a publish, a handler — once per context: most
/// messages' contexts are never read.
#[derive(Clone)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
    /// The ids' hex digits (trace id, then span id), made on first ask.
    digits: std::sync::OnceLock<[u8; 48]>,
}

impl PartialEq for TraceContext {
    fn eq(&self, other: &Self) -> bool {
        (self.trace_id, self.span_id, self.sampled) == (other.trace_id, other.span_id, other.sampled)
    }
}

impl Eq for TraceContext {}

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

/// Writes the lowercase hex digits of `bytes` into `out` (2 × its length).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

/// A random non-zero trace id (W3C: an all-zero id is invalid), one draw of `fastrand`'s
/// generator almost always.
fn random_trace_id() -> [u8; 16] {
    loop {
        match fastrand::u128(..) {
            0 => continue,
            id => return id.to_ne_bytes(),
        }
    }
}

/// A random non-zero span id (as [`random_trace_id`]).
fn random_span_id() -> [u8; 8] {
    loop {
        match fastrand::u64(..) {
            0 => continue,
            id => return id.to_ne_bytes(),
        }
    }
}

/// The bytes `digits` spell, when they are exactly 2 × `N` lowercase hex digits, not all zero.
fn hex_id<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut id = [0; N];
    for (byte, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    id.iter().any(|b| *b != 0).then_some(id)
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
    fn of(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Self {
        Self { trace_id, span_id, sampled, digits: std::sync::OnceLock::new() }
    }

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
        Some(Self::of(hex_id(&b[3..35])?, hex_id(&b[36..52])?, flags & 1 == 1))
    }

    /// A new trace with a new span.
    pub fn new_root() -> Self {
        Self::of(random_trace_id(), random_span_id(), true)
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self::of(self.trace_id, random_span_id(), self.sampled)
    }

    /// The ids' digits, spelt now if this is the first ask.
    fn digits(&self) -> &[u8; 48] {
        self.digits.get_or_init(|| {
            let mut digits = [0; 48];
            hex_into(&self.trace_id, &mut digits[..32]);
            hex_into(&self.span_id, &mut digits[32..]);
            digits
        })
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.digits()[..32]).unwrap_or_default()
    }

    /// The 16-hex-digit span id.
    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.digits()[32..]).unwrap_or_default()
    }

    /// Whether the trace is sampled (flag `01`).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    #[cfg(feature = "otel")]
    pub(crate) fn from_parts(trace_id: &str, span_id: &str, sampled: bool) -> Option<Self> {
        Some(Self::of(hex_id(trace_id.as_bytes())?, hex_id(span_id.as_bytes())?, sampled))
    }

    /// The `traceparent` header value naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id(), self.span_id(), u8::from(self.sampled))
    }
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
        assert_eq!(TraceContext::parse(&root.traceparent()), Some(root.clone()));
        let (trace_id, span_id) = (root.trace_id(), root.span_id());
        assert!(trace_id.len() == 32 && span_id.len() == 16, "{trace_id} {span_id}");
        assert!(trace_id.bytes().chain(span_id.bytes()).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(root.clone().trace_id(), trace_id, "a clone spells the same ids");
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
