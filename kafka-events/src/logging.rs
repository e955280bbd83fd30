//! Logging that costs nothing per message until something logs: the runtime's default
//! subscriber, whose lines carry the coordinates of the message being handled without a span per
//! message.
//!
//! Every line logged while a message is processed — the handler's own and the runtime's — says
//! which message: `message{topic=… partition=… offset=… key=… handler=… trace_id=… span_id=…
//! attempt=…}`. Under a subscriber of the application's, that context is a `tracing` span per
//! message, with its fields given when it is created, as every subscriber (OpenTelemetry
//! included) expects. But `tracing_subscriber::fmt` formats a span's fields when the span is
//! created, for every message, whether or not a line is ever written in it: at `info` that was
//! 28,686 instructions per message against 11,799 without a subscriber; deferring the formatting
//! to the first line still left the span itself (its registry slot, its extensions, enter, exit
//! and close: ~4,000). So under the default subscriber there is no span per message: the
//! message's coordinates ride in the task-local its handler already runs in (for its trace
//! context and correlation id), and [`MessageLines`] — the fmt layer's event formatter — writes
//! them into a line only when a line is written. A message whose handler logs nothing formats
//! nothing and creates nothing.

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use crate::trace::{self, Coordinates, TraceContext};

/// The fmt layer's event formatter of the default subscriber: tracing-subscriber's own format
/// (text, or JSON with [`MessageLines::json`]), with the `message{…}` context of the message the
/// line was logged for, when there is one. Only for a subscriber that also has
/// [`MessageLinesLayer`] (which tells the runtime not to create a span per message):
/// [`default_subscriber`] has both.
#[derive(Debug)]
pub struct MessageLines<F, R = F> {
    /// The format of a line without a message.
    whole: F,
    /// The format of what follows the message context (text: without time and level, written
    /// before the context).
    rest: R,
}

impl MessageLines<Format<Full>, Format<Full, ()>> {
    /// Text lines, as `tracing_subscriber::fmt`'s default.
    pub fn text() -> Self {
        Self { whole: Format::default(), rest: Format::default().without_time().with_level(false) }
    }
}

impl MessageLines<Format<Json>> {
    /// JSON lines with the current span, as `tracing_subscriber::fmt().json().with_current_span(true)`.
    pub fn json() -> Self {
        let json = || Format::default().json().with_current_span(true).with_span_list(true);
        Self { whole: json(), rest: json() }
    }
}

impl<S, N> FormatEvent<S, N> for MessageLines<Format<Full>, Format<Full, ()>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let written = trace::with_message(|trace, message| {
            let ansi = writer.has_ansi_escapes();
            let style = |code: &str| if ansi { format!("\x1b[{code}m") } else { String::new() };
            let reset = if ansi { "\x1b[0m" } else { "" };
            write!(writer, "{}", style("2"))?;
            SystemTime.format_time(&mut writer)?;
            write!(writer, "{reset} ")?;
            let level = *event.metadata().level();
            let colour = match level {
                tracing::Level::TRACE => "35",
                tracing::Level::DEBUG => "34",
                tracing::Level::INFO => "32",
                tracing::Level::WARN => "33",
                tracing::Level::ERROR => "31",
            };
            write!(writer, "{}{level:>5}{reset} ", style(colour))?;
            write!(writer, "{}message{{{reset}", style("1"))?;
            for (i, (name, value)) in fields(trace, message).into_iter().enumerate() {
                write!(writer, "{}{name}={value}", if i == 0 { "" } else { " " })?;
            }
            write!(writer, "{}}}{reset}{}:{reset}", style("1"), style("2"))?;
            // The spans inside it (a handler's own) follow without a space, as fmt writes a scope.
            if ctx.event_scope().is_none() {
                writer.write_char(' ')?;
            }
            self.rest.format_event(ctx, writer.by_ref(), event)
        });
        match written {
            Some(result) => result,
            None => self.whole.format_event(ctx, writer, event),
        }
    }
}

impl<S, N> FormatEvent<S, N> for MessageLines<Format<Json>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let written = trace::with_message(|trace, message| {
            let mut line = String::new();
            self.rest.format_event(ctx, Writer::new(&mut line), event)?;
            let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str::<serde_json::Value>(&line) else {
                return writer.write_str(&line);
            };
            let mut span = serde_json::Map::new();
            span.insert("name".into(), "message".into());
            for (name, value) in fields(trace, message) {
                let value = match name {
                    "partition" | "offset" | "attempt" => {
                        value.parse::<i64>().map_or_else(|_| value.into(), Into::into)
                    }
                    _ => serde_json::Value::String(value),
                };
                span.insert(name.into(), value);
            }
            let span = serde_json::Value::Object(span);
            // The message is the outermost span: first in `spans`, the current one unless a span
            // of the handler's is.
            let mut spans = match object.remove("spans") {
                Some(serde_json::Value::Array(spans)) => spans,
                _ => Vec::new(),
            };
            spans.insert(0, span.clone());
            object.entry("span").or_insert(span);
            object.insert("spans".into(), serde_json::Value::Array(spans));
            let line = serde_json::Value::Object(object).to_string();
            writeln!(writer, "{line}")
        });
        match written {
            Some(result) => result,
            None => self.whole.format_event(ctx, writer, event),
        }
    }
}

/// The fields of the message context, in the order a line shows them (the key as lossy UTF-8
/// with control characters escaped: it is the producer's data, and a log line must not carry its
/// escape sequences).
fn fields(trace: &TraceContext, message: &Coordinates) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("topic", message.labels.topic.to_string()),
        ("partition", message.partition.to_string()),
        ("offset", message.offset.to_string()),
    ];
    if let Some(key) = &message.key {
        let mut escaped = String::with_capacity(key.len());
        for c in String::from_utf8_lossy(key).chars() {
            if c.is_control() {
                escaped.extend(c.escape_default());
            } else {
                escaped.push(c);
            }
        }
        fields.push(("key", escaped));
    }
    fields.extend([
        ("handler", message.labels.handler.clone()),
        ("trace_id", trace.trace_id().to_string()),
        ("span_id", trace.span_id().to_string()),
        ("attempt", message.attempt.get().to_string()),
    ]);
    fields.extend(message.outcome.get().map(|outcome| ("outcome", outcome.to_string())));
    fields
}

/// Marks a subscriber whose lines carry the message context from the task-local (its fmt layer
/// formats events with [`MessageLines`]): under it the runtime creates no span per message. Add
/// it only together with [`MessageLines`] — without, lines lose the message's coordinates.
#[derive(Debug, Default, Clone, Copy)]
pub struct MessageLinesLayer;

impl<S: Subscriber> Layer<S> for MessageLinesLayer {}

/// Whether the current subscriber writes the message context itself (see [`MessageLinesLayer`]).
pub(crate) fn lines_carry_messages() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.is::<MessageLinesLayer>())
}

/// The subscriber [`runtime::start`](crate::runtime::start) installs when none is: lines to
/// `writer` (with colours when `ansi`), text — or JSON with the current span when `LOG_FORMAT=json`
/// — filtered by `RUST_LOG` (default `info,librdkafka=warn`), a line it cannot write dropped
/// (never a panic), each line written while a message is processed carrying the message's
/// coordinates ([`MessageLines`]).
pub fn default_subscriber<W>(writer: W, ansi: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,librdkafka=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    formatted(filter, writer, ansi, json)
}

/// The layers of [`default_subscriber`] under `filter`.
fn formatted<W, F>(filter: F, writer: W, ansi: bool, json: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    F: Layer<Registry> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter).with(MessageLinesLayer);
    if json {
        let fmt = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .event_format(MessageLines::json())
            .with_writer(writer)
            .log_internal_errors(false);
        Box::new(registry.with(fmt))
    } else {
        let fmt = tracing_subscriber::fmt::layer()
            .event_format(MessageLines::text())
            .with_writer(writer)
            .with_ansi(ansi)
            .log_internal_errors(false);
        Box::new(registry.with(fmt))
    }
}

/// Installs [`default_subscriber`] on stderr (colours only on a terminal: escape codes in a
/// container's log are noise) unless a subscriber is installed already; whether it did.
pub fn install_default() -> bool {
    if tracing::dispatcher::has_been_set() {
        return false;
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing::subscriber::set_global_default(default_subscriber(std::io::stderr, ansi)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use crate::trace::Labels;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap().lines().map(str::to_string).collect()
        }
    }

    fn coordinates(key: &[u8]) -> Coordinates {
        Coordinates {
            labels: Arc::new(Labels { topic: "orders".into(), handler: "app::on_order".into() }),
            partition: 2,
            offset: 41,
            key: Some(key.to_vec()),
            attempt: std::cell::Cell::new(1),
            outcome: std::cell::Cell::new(None),
        }
    }

    /// Logs, under the default subscriber's layers writing to a buffer (text or JSON): a line
    /// outside any message, then inside a message's scope a line, a line in a span of the
    /// handler's, and — after the outcome is noted — a warning.
    fn log_lines(json: bool, key: &[u8]) -> (Vec<String>, TraceContext) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let filter = tracing_subscriber::filter::LevelFilter::INFO;
        let trace = TraceContext::new_root();
        tracing::subscriber::with_default(formatted(filter, move || writer.clone(), false, json), || {
            assert!(lines_carry_messages());
            tracing::info!("outside");
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(trace::scope(trace.clone(), None, Some(coordinates(key)), async {
                tracing::info!(id = "n-1", "noted");
                tracing::info_span!("lookup", table = "orders").in_scope(|| tracing::info!("inner"));
                trace::with_message(|_, message| message.outcome.set(Some("retry")));
                tracing::warn!("failed");
            }));
        });
        (buffer.lines(), trace)
    }

    #[test]
    fn text_lines_carry_the_message_only_inside_its_scope() {
        let (lines, trace) = log_lines(false, b"k-1");
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].ends_with(" INFO kafka_events::logging::tests: outside"), "{}", lines[0]);
        let context = format!(
            "message{{topic=orders partition=2 offset=41 key=k-1 handler=app::on_order trace_id={} span_id={} attempt=1}}:",
            trace.trace_id(),
            trace.span_id()
        );
        assert!(
            lines[1].contains(&format!(" INFO {context} kafka_events::logging::tests: noted id=\"n-1\"")),
            "{}",
            lines[1]
        );
        assert!(
            lines[2]
                .contains(&format!(" INFO {context}lookup{{table=\"orders\"}}: kafka_events::logging::tests: inner")),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains(" WARN message{") && lines[3].contains(" attempt=1 outcome=retry}: "),
            "{}",
            lines[3]
        );
        assert!(lines[1].starts_with("20"), "the timestamp first, as fmt writes it: {}", lines[1]);
    }

    #[test]
    fn a_key_cannot_write_escape_sequences_into_a_line() {
        let (lines, _) = log_lines(false, b"k\x1b[31m\n2");
        assert!(lines[1].contains(" key=k\\u{1b}[31m\\n2 "), "{}", lines[1]);
        assert!(!lines.iter().any(|line| line.contains('\x1b')), "{lines:#?}");
    }

    #[test]
    fn json_lines_carry_the_message_as_the_outermost_span() {
        let (lines, trace) = log_lines(true, b"k-1");
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let objects: Vec<serde_json::Value> =
            lines.iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
        assert!(objects[0].get("span").is_none(), "outside any message: {}", objects[0]);
        let span = &objects[1]["span"];
        assert_eq!(span["name"], "message", "{}", objects[1]);
        assert_eq!(
            (span["topic"].as_str(), span["partition"].as_i64(), span["offset"].as_i64()),
            (Some("orders"), Some(2), Some(41))
        );
        assert_eq!((span["key"].as_str(), span["trace_id"].as_str()), (Some("k-1"), Some(trace.trace_id())));
        assert_eq!(objects[1]["fields"]["message"], "noted");
        let spans = objects[2]["spans"].as_array().expect("spans");
        assert_eq!(spans.iter().map(|s| s["name"].as_str().unwrap()).collect::<Vec<_>>(), ["message", "lookup"]);
        assert_eq!(objects[2]["span"]["name"], "lookup", "the handler's own span is the current one");
        assert_eq!(objects[3]["span"]["outcome"], "retry");
    }
}
