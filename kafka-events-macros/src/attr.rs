//! `HandlerArgs`: the parsed arguments of `#[kafka_handler(...)]`. Every problem is collected and
//! spanned on its token; parsing goes on after an error so that all of them are reported at once.

use proc_macro2::{Span, TokenTree};
use syn::parse::{Parse, ParseStream};
use syn::{LitInt, LitStr, Token};

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

/// Upper bound on `retry(max = N)`: `kafka_events::retry::MAX_RETRIES` (pinned by `tests/parity/names.tsv`).
const MAX_RETRIES: u32 = 100;

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
    pub errors: Vec<syn::Error>,
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

impl Parse for HandlerArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
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
            errors: Vec::new(),
        };
        while !input.is_empty() {
            if let Err(error) = args.parse_one(input) {
                args.errors.push(error);
                skip_to_comma(input);
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        args.check_combinations();
        if let Some((_, span)) = args.keyless {
            if args.concurrency.unwrap_or(1) <= 1 {
                args.errors.push(syn::Error::new(
                    span,
                    "`keyless` only matters when messages run concurrently; add `concurrency = N` with N above 1, or remove `keyless`",
                ));
            }
        }
        Ok(args)
    }
}

impl HandlerArgs {
    /// Arguments that are each valid but do not go together.
    fn check_combinations(&mut self) {
        let topic_retries = self.retry.as_ref().is_some_and(|r| r.mode == Some("Topic"));
        if let Some(batch) = &self.batch {
            let span = batch.span;
            if self.concurrency.is_some_and(|n| n > 1) {
                self.errors.push(syn::Error::new(span, "a `batch` handler handles one batch of a partition at a time; remove `concurrency` (more partitions give more parallelism)"));
            }
            if self.dlq.is_none() {
                self.errors.push(syn::Error::new(span, "a `batch` handler needs `dlq`: an event of a batch that fails decoding or validation is dead-lettered on its own; add `dlq`"));
            }
            if topic_retries {
                self.errors.push(syn::Error::new(
                    span,
                    "a `batch` is retried as a whole, in place; remove `mode = \"topic\"` from `retry(...)`",
                ));
            }
        }
        if let Some(span) = self.transactional {
            if self.batch.is_some() {
                self.errors.push(syn::Error::new(span, "`transactional` and `batch` do not go together; choose one"));
            }
            if self.concurrency.is_some_and(|n| n > 1) {
                self.errors.push(syn::Error::new(span, "a `transactional` handler runs one message of a partition at a time (one transaction per partition); remove `concurrency`"));
            }
            if let Some((_, _)) = &self.idempotent {
                self.errors.push(syn::Error::new(span, "`transactional` and `idempotent` do not go together: a Kafka transaction and a database transaction cannot commit atomically; use `transactional` for Kafka output, `idempotent` for database effects"));
            }
            if topic_retries {
                self.errors.push(syn::Error::new(span, "a `transactional` handler retries in place (a new transaction each attempt); remove `mode = \"topic\"` from `retry(...)`"));
            }
        }
    }

    fn parse_one(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::topic) {
            let key = input.parse::<kw::topic>()?;
            self.topic_written = true;
            input.parse::<Token![=]>()?;
            let topic = string_literal(
                input,
                "`topic` must be a string literal, e.g. `topic = \"orders.created\"`: the attribute registers it at compile time; for a topic per environment keep the name fixed and set `KAFKA_TOPIC_PREFIX` (e.g. `staging.`)",
            )?;
            if let Err(reason) = check_topic_name(&topic.value()) {
                self.errors.push(syn::Error::new(topic.span(), format!("invalid `topic`: {reason}")));
            }
            set_once(&mut self.topic, topic, key.span, "topic", None)?;
        } else if lookahead.peek(kw::retry) {
            let key = input.parse::<kw::retry>()?;
            if !input.peek(syn::token::Paren) {
                return Err(syn::Error::new(key.span, "`retry` takes arguments, e.g. `retry(max = 3)`"));
            }
            let content;
            syn::parenthesized!(content in input);
            let retry = parse_retry(&content, &mut self.errors)?;
            set_once(&mut self.retry, retry, key.span, "retry(...)", None)?;
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
                    self.errors.push(syn::Error::new(topic.span(), format!("invalid `dlq` topic: {reason}")));
                }
                Dlq::Topic(topic)
            } else {
                Dlq::Default
            };
            set_once(&mut self.dlq, dlq, key.span, "dlq", None)?;
        } else if lookahead.peek(kw::concurrency) {
            let key = input.parse::<kw::concurrency>()?;
            input.parse::<Token![=]>()?;
            let hint = format!(
                "`concurrency` must be a whole number from 1 to {MAX_CONCURRENCY}: how many messages of one partition are handled at once, e.g. `concurrency = 50`"
            );
            let lit: LitInt = input.parse().map_err(|e| syn::Error::new(e.span(), &hint))?;
            let n: u32 = lit.base10_parse().map_err(|_| syn::Error::new(lit.span(), &hint))?;
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                return Err(syn::Error::new(lit.span(), hint));
            }
            set_once(&mut self.concurrency, n, key.span, "concurrency", None)?;
        } else if lookahead.peek(kw::circuit) {
            let key = input.parse::<kw::circuit>()?;
            if !input.peek(syn::token::Paren) {
                return Err(syn::Error::new(
                    key.span,
                    "`circuit` takes arguments, e.g. `circuit(failures = 5, reset = \"30s\")`",
                ));
            }
            let content;
            syn::parenthesized!(content in input);
            let circuit = parse_circuit(&content, &mut self.errors)?;
            set_once(&mut self.circuit, circuit, key.span, "circuit(...)", None)?;
        } else if lookahead.peek(kw::provision) {
            let key = input.parse::<kw::provision>()?;
            if !input.peek(syn::token::Paren) {
                return Err(syn::Error::new(
                    key.span,
                    "`provision` takes arguments, e.g. `provision(partitions = 6, retention = \"7days\", cleanup = \"compact\")`",
                ));
            }
            let content;
            syn::parenthesized!(content in input);
            let provision = parse_provision(&content, &mut self.errors)?;
            set_once(&mut self.provision, provision, key.span, "provision(...)", None)?;
        } else if lookahead.peek(kw::keyless) {
            let key = input.parse::<kw::keyless>()?;
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let keyless = match lit.value().as_str() {
                "ordered" => "Ordered",
                "unordered" => "Unordered",
                other => {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("unknown `keyless` order `{other}`; expected \"ordered\" or \"unordered\""),
                    ))
                }
            };
            set_once(&mut self.keyless, (keyless, key.span), key.span, "keyless", None)?;
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
            let key = input.parse::<kw::batch>()?;
            if !input.peek(syn::token::Paren) {
                return Err(syn::Error::new(
                    key.span,
                    "`batch` takes arguments, e.g. `batch(max = 500, linger = \"100ms\")`",
                ));
            }
            let content;
            syn::parenthesized!(content in input);
            let batch = parse_batch(&content, key.span, &mut self.errors)?;
            set_once(&mut self.batch, batch, key.span, "batch(...)", None)?;
        } else if lookahead.peek(kw::timeout) {
            let key = input.parse::<kw::timeout>()?;
            input.parse::<Token![=]>()?;
            let (ms, span) = parse_duration(input, "timeout")?;
            if ms == 0 {
                self.errors.push(syn::Error::new(
                    span,
                    "`timeout` must be longer than 0: the longest one call of the handler may take, e.g. `timeout = \"10s\"`",
                ));
            }
            set_once(&mut self.timeout_ms, ms, key.span, "timeout", None)?;
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

fn parse_retry(input: ParseStream<'_>, errors: &mut Vec<syn::Error>) -> syn::Result<RetryArgs> {
    let mut retry = RetryArgs::default();
    let mut initial: Option<(u64, Span)> = None;
    let mut max_delay: Option<u64> = None;
    parse_list(input, errors, |input| parse_retry_one(input, &mut retry, &mut initial, &mut max_delay))?;
    retry.initial_ms = initial.map(|(ms, _)| ms);
    retry.max_delay_ms = max_delay;
    if let (Some((initial, span)), Some(max_delay)) = (initial, max_delay) {
        if initial > max_delay {
            errors.push(syn::Error::new(
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
        let key = input.parse::<kw::max>()?;
        input.parse::<Token![=]>()?;
        let lit: LitInt = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), "`max` must be a whole number of retries, e.g. `max = 3`"))?;
        let max: u32 = lit
            .base10_parse()
            .map_err(|_| syn::Error::new(lit.span(), "`max` must be a whole number of retries, e.g. `max = 3`"))?;
        if max > MAX_RETRIES {
            return Err(syn::Error::new(
                lit.span(),
                format!("`max = {max}` is too many retries; at most {MAX_RETRIES} are allowed"),
            ));
        }
        set_once(&mut retry.max, max, key.span, "max", WITHIN)?;
    } else if lookahead.peek(kw::backoff) {
        let key = input.parse::<kw::backoff>()?;
        input.parse::<Token![=]>()?;
        let lit: LitStr = input.parse()?;
        let backoff = match lit.value().as_str() {
            "exponential" => "Exponential",
            "linear" => "Linear",
            "fixed" => "Fixed",
            other => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("unknown backoff `{other}`; expected \"exponential\", \"linear\" or \"fixed\""),
                ))
            }
        };
        set_once(&mut retry.backoff, backoff, key.span, "backoff", WITHIN)?;
    } else if lookahead.peek(kw::initial) {
        let key = input.parse::<kw::initial>()?;
        input.parse::<Token![=]>()?;
        let (ms, span) = parse_duration(input, "initial")?;
        set_once(initial, (ms, span), key.span, "initial", WITHIN)?;
    } else if lookahead.peek(kw::max_delay) {
        let key = input.parse::<kw::max_delay>()?;
        input.parse::<Token![=]>()?;
        let (ms, _) = parse_duration(input, "max_delay")?;
        set_once(max_delay, ms, key.span, "max_delay", WITHIN)?;
    } else if lookahead.peek(kw::jitter) {
        let key = input.parse::<kw::jitter>()?;
        input.parse::<Token![=]>()?;
        let hint = "`jitter` must be a fraction between 0.0 and 1.0, e.g. `jitter = 0.1`";
        let lit: syn::LitFloat = input.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
        let jitter: f64 = lit.base10_parse().map_err(|_| syn::Error::new(lit.span(), hint))?;
        if !(0.0..=1.0).contains(&jitter) {
            return Err(syn::Error::new(lit.span(), hint));
        }
        set_once(&mut retry.jitter, jitter, key.span, "jitter", WITHIN)?;
    } else if lookahead.peek(kw::mode) {
        let key = input.parse::<kw::mode>()?;
        input.parse::<Token![=]>()?;
        let lit: LitStr = input.parse()?;
        let mode = match lit.value().as_str() {
            "topic" => "Topic",
            "in_place" => "InPlace",
            other => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("unknown retry mode `{other}`; expected \"topic\" or \"in_place\""),
                ))
            }
        };
        set_once(&mut retry.mode, mode, key.span, "mode", WITHIN)?;
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

fn parse_circuit(input: ParseStream<'_>, errors: &mut Vec<syn::Error>) -> syn::Result<CircuitArgs> {
    let mut circuit = CircuitArgs::default();
    parse_list(input, errors, |input| {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::failures) {
            let key = input.parse::<kw::failures>()?;
            input.parse::<Token![=]>()?;
            let hint = "`failures` must be a whole number of at least 1: consecutive failed calls that open the circuit, e.g. `failures = 5`";
            let lit: LitInt = input.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
            let n: u32 = lit.base10_parse().map_err(|_| syn::Error::new(lit.span(), hint))?;
            if n == 0 {
                return Err(syn::Error::new(lit.span(), hint));
            }
            set_once(&mut circuit.failures, n, key.span, "failures", Some("circuit(...)"))?;
        } else if lookahead.peek(kw::reset) {
            let key = input.parse::<kw::reset>()?;
            input.parse::<Token![=]>()?;
            let (ms, span) = parse_duration(input, "reset")?;
            if ms == 0 {
                return Err(syn::Error::new(span, "`reset` must be longer than 0, e.g. `reset = \"30s\"`"));
            }
            set_once(&mut circuit.reset_ms, ms, key.span, "reset", Some("circuit(...)"))?;
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

fn parse_provision(input: ParseStream<'_>, errors: &mut Vec<syn::Error>) -> syn::Result<ProvisionArgs> {
    let mut provision = ProvisionArgs::default();
    parse_list(input, errors, |input| {
        const WITHIN: Option<&str> = Some("provision(...)");
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::partitions) {
            let key = input.parse::<kw::partitions>()?;
            input.parse::<Token![=]>()?;
            let hint = "`partitions` must be a whole number from 1 to 10000, e.g. `partitions = 6`";
            let lit: LitInt = input.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
            let n: i32 = lit.base10_parse().map_err(|_| syn::Error::new(lit.span(), hint))?;
            if !(1..=10_000).contains(&n) {
                return Err(syn::Error::new(lit.span(), hint));
            }
            set_once(&mut provision.partitions, n, key.span, "partitions", WITHIN)?;
        } else if lookahead.peek(kw::retention) {
            let key = input.parse::<kw::retention>()?;
            input.parse::<Token![=]>()?;
            let (ms, span) = parse_duration(input, "retention")?;
            if ms == 0 {
                return Err(syn::Error::new(span, "`retention` must be longer than 0, e.g. `retention = \"7days\"`"));
            }
            set_once(&mut provision.retention_ms, ms, key.span, "retention", WITHIN)?;
        } else if lookahead.peek(kw::cleanup) {
            let key = input.parse::<kw::cleanup>()?;
            input.parse::<Token![=]>()?;
            let lit: LitStr = input.parse()?;
            let policy = lit.value().replace(' ', "");
            if !matches!(policy.as_str(), "delete" | "compact" | "compact,delete" | "delete,compact") {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown cleanup policy `{}`; expected \"delete\", \"compact\" or \"compact,delete\"",
                        lit.value()
                    ),
                ));
            }
            set_once(&mut provision.cleanup, policy, key.span, "cleanup", WITHIN)?;
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

fn parse_batch(input: ParseStream<'_>, span: Span, errors: &mut Vec<syn::Error>) -> syn::Result<BatchArgs> {
    let mut max = None;
    let mut max_written = false;
    let mut linger = None;
    parse_list(input, errors, |input| {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::max) {
            let key = input.parse::<kw::max>()?;
            max_written = true;
            input.parse::<Token![=]>()?;
            let hint = format!("`max` must be a whole number of events from 1 to {MAX_BATCH}, e.g. `max = 500`");
            let lit: LitInt = input.parse().map_err(|e| syn::Error::new(e.span(), &hint))?;
            let n: u32 = lit.base10_parse().map_err(|_| syn::Error::new(lit.span(), &hint))?;
            if !(1..=MAX_BATCH).contains(&n) {
                return Err(syn::Error::new(lit.span(), hint));
            }
            set_once(&mut max, n, key.span, "max", Some("batch(...)"))?;
        } else if lookahead.peek(kw::linger) {
            let key = input.parse::<kw::linger>()?;
            input.parse::<Token![=]>()?;
            let (ms, _) = parse_duration(input, "linger")?;
            set_once(&mut linger, ms, key.span, "linger", Some("batch(...)"))?;
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
    errors: &mut Vec<syn::Error>,
    mut one: impl FnMut(ParseStream<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    while !input.is_empty() {
        if let Err(error) = one(input) {
            errors.push(error);
            skip_to_comma(input);
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
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

/// `kafka_events::names::check_topic_name`, word for word: a proc-macro crate cannot share code
/// with the crate that re-exports it, so both check themselves against `tests/parity/names.tsv`.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name `{name}` is reserved"));
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters long; the limit is 249", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "topic name `{name}` contains `{bad}`; only ASCII letters, digits, `.`, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../../tests/parity/rows.rs");

    /// Every row of the rules shared with the runtime (`tests/parity/names.tsv`).
    #[test]
    fn rules_match_the_runtime() {
        for (kind, input, expected) in parity_rows(include_str!("../../tests/parity/names.tsv")) {
            match kind {
                "max_retries" => assert_eq!(MAX_RETRIES.to_string(), input, "MAX_RETRIES"),
                "topic" => {
                    let got = check_topic_name(&input).err().unwrap_or_else(|| "ok".into());
                    assert_eq!(got, expected, "topic name {input:?}");
                }
                other => panic!("unknown row kind {other}"),
            }
        }
    }
}
