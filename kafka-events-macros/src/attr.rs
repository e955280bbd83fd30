//! `HandlerArgs`: the parsed arguments of `#[kafka_handler(...)]`. Every problem is collected in
//! the expansion's [`Ctxt`] and spanned on its token; parsing goes on after an error so that all
//! of them are reported at once. Arguments are parsed one by one (`parse_one`), then checked
//! together in one pass (`check_combinations`).

use kafka_events_rules::{check_topic_name, MAX_RETRIES};
use proc_macro2::{Span, TokenTree};
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{LitInt, LitStr, Token};

use crate::ctxt::Ctxt;

mod kw {
    syn::custom_keyword!(topic);
    syn::custom_keyword!(retry);
    syn::custom_keyword!(dlq);
    syn::custom_keyword!(max);
    syn::custom_keyword!(backoff);
    syn::custom_keyword!(initial);
    syn::custom_keyword!(max_delay);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(mode);
    syn::custom_keyword!(concurrency);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(keyless);
    syn::custom_keyword!(circuit);
    syn::custom_keyword!(failures);
    syn::custom_keyword!(reset);
    syn::custom_keyword!(provision);
    syn::custom_keyword!(partitions);
    syn::custom_keyword!(retention);
    syn::custom_keyword!(cleanup);
    syn::custom_keyword!(idempotent);
    syn::custom_keyword!(id);
    syn::custom_keyword!(batch);
    syn::custom_keyword!(linger);
    syn::custom_keyword!(transactional);
}

/// Upper bound on `batch(max = N)`.
const MAX_BATCH: u32 = 100_000;

/// Upper bound on `concurrency = N` (checked here only: the runtime takes what registration says).
const MAX_CONCURRENCY: u32 = 10_000;

pub(crate) struct HandlerArgs {
    pub topic: Option<LitStr>,
    pub retry: Option<RetryArgs>,
    pub dlq: Option<Dlq>,
    pub concurrency: Option<u32>,
    /// `keyless = "..."`: the variant name of `Keyless`, and where it was written.
    pub keyless: Option<(&'static str, Span)>,
    pub circuit: Option<CircuitArgs>,
    pub provision: Option<ProvisionArgs>,
    /// `idempotent` or `idempotent(id = "field")`: the field's name (with its span), if given.
    pub idempotent: Option<(Span, Option<syn::Ident>)>,
    pub batch: Option<BatchArgs>,
    /// `transactional`, and where it was written.
    pub transactional: Option<Span>,
    /// `timeout = "10s"`: the handler's time limit per call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// A `topic` was written, even if its value was refused: no "requires a topic" follows.
    pub topic_written: bool,
}

/// `batch(max = 500, linger = "100ms")`.
pub(crate) struct BatchArgs {
    pub span: Span,
    pub max: u32,
    pub linger_ms: u64,
}

/// `provision(partitions = N, retention = "7d", cleanup = "compact")`.
#[derive(Default)]
pub(crate) struct ProvisionArgs {
    pub partitions: Option<i32>,
    pub retention_ms: Option<u64>,
    pub cleanup: Option<String>,
}

/// `circuit(failures = N, reset = "30s")`.
#[derive(Default)]
pub(crate) struct CircuitArgs {
    pub failures: Option<u32>,
    pub reset_ms: Option<u64>,
}

#[derive(Default)]
pub(crate) struct RetryArgs {
    pub max: Option<u32>,
    pub backoff: Option<&'static str>,
    pub initial_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
    pub jitter: Option<f64>,
    pub mode: Option<&'static str>,
}

pub(crate) enum Dlq {
    Default,
    Topic(LitStr),
}

impl HandlerArgs {
    /// Parses the attribute's arguments, recording every problem in `cx`; `None` when they are
    /// not even a comma-separated list.
    pub(crate) fn parse(cx: &Ctxt, tokens: proc_macro2::TokenStream) -> Option<Self> {
        let parser = |input: ParseStream<'_>| {
            let mut args = HandlerArgs {
                topic: None,
                retry: None,
                dlq: None,
                concurrency: None,
                keyless: None,
                circuit: None,
                provision: None,
                idempotent: None,
                batch: None,
                transactional: None,
                timeout_ms: None,
                topic_written: false,
            };
            parse_list(input, cx, |input| args.parse_one(cx, input))?;
            Ok(args)
        };
        let args = cx.ok(parser.parse2(tokens))?;
        args.check_combinations(cx);
        Some(args)
    }
}

impl HandlerArgs {
    /// Arguments that are each valid but do not go together: the one pass over them all.
    fn check_combinations(&self, cx: &Ctxt) {
        let topic_retries = self.retry.as_ref().is_some_and(|r| r.mode == Some("Topic"));
        if let Some(batch) = &self.batch {
            let span = batch.span;
            if self.concurrency.is_some_and(|n| n > 1) {
                cx.push(syn::Error::new(span, "a `batch` handler handles one batch of a partition at a time; remove `concurrency` (more partitions give more parallelism)"));
            }
            if self.dlq.is_none() {
                cx.push(syn::Error::new(span, "a `batch` handler needs `dlq`: an event of a batch that fails decoding or validation is dead-lettered on its own; add `dlq`"));
            }
            if topic_retries {
                cx.push(syn::Error::new(
                    span,
                    "a `batch` is retried as a whole, in place; remove `mode = \"topic\"` from `retry(...)`",
                ));
            }
        }
        if let Some(span) = self.transactional {
            if self.batch.is_some() {
                cx.push(syn::Error::new(span, "`transactional` and `batch` do not go together; choose one"));
            }
            if self.concurrency.is_some_and(|n| n > 1) {
                cx.push(syn::Error::new(span, "a `transactional` handler runs one message of a partition at a time (one transaction per partition); remove `concurrency`"));
            }
            if let Some((_, _)) = &self.idempotent {
                cx.push(syn::Error::new(span, "`transactional` and `idempotent` do not go together: a Kafka transaction and a database transaction cannot commit atomically; use `transactional` for Kafka output, `idempotent` for database effects"));
            }
            if topic_retries {
                cx.push(syn::Error::new(span, "a `transactional` handler retries in place (a new transaction each attempt); remove `mode = \"topic\"` from `retry(...)`"));
            }
        }
        if let Some((_, span)) = self.keyless {
            if self.concurrency.unwrap_or(1) <= 1 {
                cx.push(syn::Error::new(
                    span,
                    "`keyless` only matters when messages run concurrently; add `concurrency = N` with N above 1, or remove `keyless`",
                ));
            }
        }
        if self.topic.is_none() && !self.topic_written {
            cx.push(syn::Error::new(
                Span::call_site(),
                "`#[kafka_handler]` requires a topic, e.g. `#[kafka_handler(topic = \"orders.created\")]`",
            ));
        }
    }

    fn parse_one(&mut self, cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::topic) {
            self.topic_written = true;
            let key = assign::<kw::topic>(input)?;
            let topic = string_literal(
                input,
                "`topic` must be a string literal, e.g. `topic = \"orders.created\"`: the attribute registers it at compile time; for a topic per environment keep the name fixed and set `KAFKA_TOPIC_PREFIX` (e.g. `staging.`)",
            )?;
            if let Err(reason) = check_topic_name(&topic.value()) {
                cx.push(syn::Error::new(topic.span(), format!("invalid `topic`: {reason}")));
            }
            set_once(&mut self.topic, topic, key, "topic", None)?;
        } else if lookahead.peek(kw::retry) {
            let (key, content) = call::<kw::retry>(input, "retry", "retry(max = 3)")?;
            let retry = parse_retry(&content, cx)?;
            set_once(&mut self.retry, retry, key, "retry(...)", None)?;
        } else if lookahead.peek(kw::dlq) {
            let key = input.parse::<kw::dlq>()?;
            let dlq = if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                let hint = "write `dlq` (dead letters go to `<topic>.dlq`) or `dlq = \"topic\"` (a string literal naming the dead-letter topic)";
                let topic = match string_literal(input, hint) {
                    Ok(topic) => topic,
                    Err(error) => {
                        // Counted as given: no follow-on "needs `dlq`".
                        self.dlq = Some(Dlq::Default);
                        return Err(error);
                    }
                };
                if let Err(reason) = check_topic_name(&topic.value()) {
                    cx.push(syn::Error::new(topic.span(), format!("invalid `dlq` topic: {reason}")));
                }
                Dlq::Topic(topic)
            } else {
                Dlq::Default
            };
            set_once(&mut self.dlq, dlq, key.span, "dlq", None)?;
        } else if lookahead.peek(kw::concurrency) {
            let key = assign::<kw::concurrency>(input)?;
            let hint = format!(
                "`concurrency` must be a whole number from 1 to {MAX_CONCURRENCY}: how many messages of one partition are handled at once, e.g. `concurrency = 50`"
            );
            let (n, _) = whole_number(input, 1..=MAX_CONCURRENCY, &hint)?;
            set_once(&mut self.concurrency, n, key, "concurrency", None)?;
        } else if lookahead.peek(kw::circuit) {
            let (key, content) = call::<kw::circuit>(input, "circuit", "circuit(failures = 5, reset = \"30s\")")?;
            let circuit = parse_circuit(&content, cx)?;
            set_once(&mut self.circuit, circuit, key, "circuit(...)", None)?;
        } else if lookahead.peek(kw::provision) {
            let example = "provision(partitions = 6, retention = \"7days\", cleanup = \"compact\")";
            let (key, content) = call::<kw::provision>(input, "provision", example)?;
            let provision = parse_provision(&content, cx)?;
            set_once(&mut self.provision, provision, key, "provision(...)", None)?;
        } else if lookahead.peek(kw::keyless) {
            let key = assign::<kw::keyless>(input)?;
            let keyless = one_of(input, "`keyless` order", &[("ordered", "Ordered"), ("unordered", "Unordered")])?;
            set_once(&mut self.keyless, (keyless, key), key, "keyless", None)?;
        } else if lookahead.peek(kw::idempotent) {
            let key = input.parse::<kw::idempotent>()?;
            let mut field = None;
            if input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in input);
                let hint = "`idempotent(id = \"field\")` names the payload field holding the event id, e.g. `idempotent(id = \"order_id\")`";
                content.parse::<kw::id>().map_err(|e| syn::Error::new(e.span(), hint))?;
                content.parse::<Token![=]>().map_err(|e| syn::Error::new(e.span(), hint))?;
                let lit: LitStr = content.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
                let ident = syn::parse_str::<syn::Ident>(&lit.value()).map_err(|_| {
                    syn::Error::new(lit.span(), format!("`{}` is not a field name; {hint}", lit.value()))
                })?;
                if !content.is_empty() {
                    return Err(syn::Error::new(content.span(), hint));
                }
                field = Some(syn::Ident::new(&ident.to_string(), lit.span()));
            }
            set_once(&mut self.idempotent, (key.span, field), key.span, "idempotent", None)?;
        } else if lookahead.peek(kw::batch) {
            let (key, content) = call::<kw::batch>(input, "batch", "batch(max = 500, linger = \"100ms\")")?;
            let batch = parse_batch(&content, key, cx)?;
            set_once(&mut self.batch, batch, key, "batch(...)", None)?;
        } else if lookahead.peek(kw::timeout) {
            let key = assign::<kw::timeout>(input)?;
            let (ms, span) = parse_duration(input, "timeout")?;
            if ms == 0 {
                cx.push(syn::Error::new(
                    span,
                    "`timeout` must be longer than 0: the longest one call of the handler may take, e.g. `timeout = \"10s\"`",
                ));
            }
            set_once(&mut self.timeout_ms, ms, key, "timeout", None)?;
        } else if lookahead.peek(kw::transactional) {
            let key = input.parse::<kw::transactional>()?;
            set_once(&mut self.transactional, key.span, key.span, "transactional", None)?;
        } else if input.peek(syn::Ident) {
            let ident: syn::Ident = input.parse()?;
            return Err(syn::Error::new(
                ident.span(),
                format!(
                    "unknown `#[kafka_handler]` argument `{ident}`; expected `topic = \"...\"`, `retry(...)`, `dlq`, `concurrency = N`, `keyless = \"...\"`, `circuit(...)`, `provision(...)`, `idempotent`, `batch(...)`, `transactional` or `timeout = \"...\"`"
                ),
            ));
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    }
}

fn parse_retry(input: ParseStream<'_>, cx: &Ctxt) -> syn::Result<RetryArgs> {
    let mut retry = RetryArgs::default();
    let mut initial: Option<(u64, Span)> = None;
    let mut max_delay: Option<u64> = None;
    parse_list(input, cx, |input| parse_retry_one(input, &mut retry, &mut initial, &mut max_delay))?;
    retry.initial_ms = initial.map(|(ms, _)| ms);
    retry.max_delay_ms = max_delay;
    if let (Some((initial, span)), Some(max_delay)) = (initial, max_delay) {
        if initial > max_delay {
            cx.push(syn::Error::new(
                span,
                "`initial` is longer than `max_delay`; make `initial` shorter or `max_delay` longer",
            ));
        }
    }
    Ok(retry)
}

fn parse_retry_one(
    input: ParseStream<'_>,
    retry: &mut RetryArgs,
    initial: &mut Option<(u64, Span)>,
    max_delay: &mut Option<u64>,
) -> syn::Result<()> {
    const WITHIN: Option<&str> = Some("retry(...)");
    let lookahead = input.lookahead1();
    if lookahead.peek(kw::max) {
        let key = assign::<kw::max>(input)?;
        let (max, span) = whole_number(input, 0..=u32::MAX, "`max` must be a whole number of retries, e.g. `max = 3`")?;
        if max > MAX_RETRIES {
            return Err(syn::Error::new(
                span,
                format!("`max = {max}` is too many retries; at most {MAX_RETRIES} are allowed"),
            ));
        }
        set_once(&mut retry.max, max, key, "max", WITHIN)?;
    } else if lookahead.peek(kw::backoff) {
        let key = assign::<kw::backoff>(input)?;
        let backoff =
            one_of(input, "backoff", &[("exponential", "Exponential"), ("linear", "Linear"), ("fixed", "Fixed")])?;
        set_once(&mut retry.backoff, backoff, key, "backoff", WITHIN)?;
    } else if lookahead.peek(kw::initial) {
        let key = assign::<kw::initial>(input)?;
        let (ms, span) = parse_duration(input, "initial")?;
        set_once(initial, (ms, span), key, "initial", WITHIN)?;
    } else if lookahead.peek(kw::max_delay) {
        let key = assign::<kw::max_delay>(input)?;
        let (ms, _) = parse_duration(input, "max_delay")?;
        set_once(max_delay, ms, key, "max_delay", WITHIN)?;
    } else if lookahead.peek(kw::jitter) {
        let key = assign::<kw::jitter>(input)?;
        let hint = "`jitter` must be a fraction between 0.0 and 1.0, e.g. `jitter = 0.1`";
        let lit: syn::LitFloat = input.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
        let jitter: f64 = lit.base10_parse().map_err(|_| syn::Error::new(lit.span(), hint))?;
        if !(0.0..=1.0).contains(&jitter) {
            return Err(syn::Error::new(lit.span(), hint));
        }
        set_once(&mut retry.jitter, jitter, key, "jitter", WITHIN)?;
    } else if lookahead.peek(kw::mode) {
        let key = assign::<kw::mode>(input)?;
        let mode = one_of(input, "retry mode", &[("topic", "Topic"), ("in_place", "InPlace")])?;
        set_once(&mut retry.mode, mode, key, "mode", WITHIN)?;
    } else if input.peek(syn::Ident) {
        let ident: syn::Ident = input.parse()?;
        return Err(syn::Error::new(
            ident.span(),
            format!("unknown `retry` argument `{ident}`; expected `max`, `backoff`, `initial`, `max_delay`, `jitter` or `mode`"),
        ));
    } else {
        return Err(lookahead.error());
    }
    Ok(())
}

fn parse_circuit(input: ParseStream<'_>, cx: &Ctxt) -> syn::Result<CircuitArgs> {
    let mut circuit = CircuitArgs::default();
    parse_list(input, cx, |input| {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::failures) {
            let key = assign::<kw::failures>(input)?;
            let hint = "`failures` must be a whole number of at least 1: consecutive failed calls that open the circuit, e.g. `failures = 5`";
            let (n, _) = whole_number(input, 1..=u32::MAX, hint)?;
            set_once(&mut circuit.failures, n, key, "failures", Some("circuit(...)"))?;
        } else if lookahead.peek(kw::reset) {
            let key = assign::<kw::reset>(input)?;
            let (ms, span) = parse_duration(input, "reset")?;
            if ms == 0 {
                return Err(syn::Error::new(span, "`reset` must be longer than 0, e.g. `reset = \"30s\"`"));
            }
            set_once(&mut circuit.reset_ms, ms, key, "reset", Some("circuit(...)"))?;
        } else if input.peek(syn::Ident) {
            let ident: syn::Ident = input.parse()?;
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown `circuit` argument `{ident}`; expected `failures` or `reset`"),
            ));
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    })?;
    Ok(circuit)
}

fn parse_provision(input: ParseStream<'_>, cx: &Ctxt) -> syn::Result<ProvisionArgs> {
    let mut provision = ProvisionArgs::default();
    parse_list(input, cx, |input| {
        const WITHIN: Option<&str> = Some("provision(...)");
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::partitions) {
            let key = assign::<kw::partitions>(input)?;
            let hint = "`partitions` must be a whole number from 1 to 10000, e.g. `partitions = 6`";
            let (n, _) = whole_number(input, 1..=10_000i32, hint)?;
            set_once(&mut provision.partitions, n, key, "partitions", WITHIN)?;
        } else if lookahead.peek(kw::retention) {
            let key = assign::<kw::retention>(input)?;
            let (ms, span) = parse_duration(input, "retention")?;
            if ms == 0 {
                return Err(syn::Error::new(span, "`retention` must be longer than 0, e.g. `retention = \"7days\"`"));
            }
            set_once(&mut provision.retention_ms, ms, key, "retention", WITHIN)?;
        } else if lookahead.peek(kw::cleanup) {
            let key = assign::<kw::cleanup>(input)?;
            let lit: LitStr = input.parse()?;
            let Some(policy) = kafka_events_rules::cleanup_policy(&lit.value()) else {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown cleanup policy `{}`; expected \"delete\", \"compact\" or \"compact,delete\"",
                        lit.value()
                    ),
                ));
            };
            set_once(&mut provision.cleanup, policy, key, "cleanup", WITHIN)?;
        } else if input.peek(syn::Ident) {
            let ident: syn::Ident = input.parse()?;
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown `provision` argument `{ident}`; expected `partitions`, `retention` or `cleanup`"),
            ));
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    })?;
    Ok(provision)
}

fn parse_batch(input: ParseStream<'_>, span: Span, cx: &Ctxt) -> syn::Result<BatchArgs> {
    let mut max = None;
    let mut max_written = false;
    let mut linger = None;
    parse_list(input, cx, |input| {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::max) {
            let key = input.parse::<kw::max>()?.span;
            max_written = true;
            input.parse::<Token![=]>()?;
            let hint = format!("`max` must be a whole number of events from 1 to {MAX_BATCH}, e.g. `max = 500`");
            let (n, _) = whole_number(input, 1..=MAX_BATCH, &hint)?;
            set_once(&mut max, n, key, "max", Some("batch(...)"))?;
        } else if lookahead.peek(kw::linger) {
            let key = assign::<kw::linger>(input)?;
            let (ms, _) = parse_duration(input, "linger")?;
            set_once(&mut linger, ms, key, "linger", Some("batch(...)"))?;
        } else if input.peek(syn::Ident) {
            let ident: syn::Ident = input.parse()?;
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown `batch` argument `{ident}`; expected `max` or `linger`"),
            ));
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    })?;
    // An invalid `max` was reported already; 1 stands in for it.
    let Some(max) = max.or(max_written.then_some(1)) else {
        return Err(syn::Error::new(
            span,
            "`batch` needs `max`, the most events per call, e.g. `batch(max = 500, linger = \"100ms\")`",
        ));
    };
    Ok(BatchArgs { span, max, linger_ms: linger.unwrap_or(100) })
}

/// Parses a comma-separated argument list with `one`, collecting every argument's error (and
/// going on after it) instead of stopping at the first.
fn parse_list(
    input: ParseStream<'_>,
    cx: &Ctxt,
    mut one: impl FnMut(ParseStream<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    while !input.is_empty() {
        if let Err(error) = one(input) {
            cx.push(error);
            skip_to_comma(input);
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// `key =`: the keyword and its `=`; the key's span (where "given twice" points).
fn assign<K: Parse + Spanned>(input: ParseStream<'_>) -> syn::Result<Span> {
    let key: K = input.parse()?;
    input.parse::<Token![=]>()?;
    Ok(key.span())
}

/// `key(...)`: the keyword's span and what its parentheses hold, or the error that `name` takes
/// arguments, e.g. `example`.
fn call<'a, K: Parse + Spanned>(
    input: ParseStream<'a>,
    name: &str,
    example: &str,
) -> syn::Result<(Span, syn::parse::ParseBuffer<'a>)> {
    let key: K = input.parse()?;
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(key.span(), format!("`{name}` takes arguments, e.g. `{example}`")));
    }
    let content;
    syn::parenthesized!(content in input);
    Ok((key.span(), content))
}

/// A whole number within `range` and its span; else `hint`, spanned on what was written.
fn whole_number<N>(input: ParseStream<'_>, range: std::ops::RangeInclusive<N>, hint: &str) -> syn::Result<(N, Span)>
where
    N: std::str::FromStr + PartialOrd,
    N::Err: std::fmt::Display,
{
    let lit: LitInt = input.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
    match lit.base10_parse::<N>() {
        Ok(n) if range.contains(&n) => Ok((n, lit.span())),
        _ => Err(syn::Error::new(lit.span(), hint)),
    }
}

/// A string literal naming one of `options` (`(written, variant)`): its variant; else
/// "unknown {what} `…`; expected "a", "b" or "c"".
fn one_of(input: ParseStream<'_>, what: &str, options: &[(&str, &'static str)]) -> syn::Result<&'static str> {
    let lit: LitStr = input.parse()?;
    let written = lit.value();
    if let Some((_, variant)) = options.iter().find(|(name, _)| *name == written) {
        return Ok(variant);
    }
    let names: Vec<String> = options.iter().map(|(name, _)| format!("\"{name}\"")).collect();
    let expected = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(syn::Error::new(lit.span(), format!("unknown {what} `{written}`; expected {expected}")))
}

fn parse_duration(input: ParseStream<'_>, name: &str) -> syn::Result<(u64, Span)> {
    let hint = format!("`{name}` must be a duration string such as \"200ms\" or \"2s\"");
    let lit: LitStr = input.parse().map_err(|e| syn::Error::new(e.span(), &hint))?;
    let duration =
        humantime::parse_duration(&lit.value()).map_err(|e| syn::Error::new(lit.span(), format!("{hint}: {e}")))?;
    let ms = u64::try_from(duration.as_millis())
        .map_err(|_| syn::Error::new(lit.span(), format!("`{name}` is too long")))?;
    Ok((ms, lit.span()))
}

/// A string literal, or an error spanned on whatever was written instead, saying `hint`.
fn string_literal(input: ParseStream<'_>, hint: &str) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    let written: syn::Expr = input.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
    Err(syn::Error::new_spanned(written, hint))
}

fn skip_to_comma(input: ParseStream<'_>) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}

/// Fills an argument's slot, or fails with the one error for an argument given twice (serde_derive's
/// `Attr::set`): "expected only a single `name` argument", followed by " in `within`" for an
/// argument of `retry(...)`, `circuit(...)` and the other lists.
fn set_once<T>(slot: &mut Option<T>, value: T, span: Span, name: &str, within: Option<&str>) -> syn::Result<()> {
    if slot.is_some() {
        let within = within.map(|w| format!(" in `{w}`")).unwrap_or_default();
        return Err(syn::Error::new(span, format!("expected only a single `{name}` argument{within}")));
    }
    *slot = Some(value);
    Ok(())
}
