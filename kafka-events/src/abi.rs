//! What the code `#[kafka_handler]` generates calls and builds: the handler's registration
//! (built in `const` context) and the functions that decode, validate and invoke it. Re-exported
//! through `kafka_events::__private`; users never name these types.

use std::future::Future;
use std::pin::Pin;

use crate::error_kind::ErrorKind;
use crate::handler::{BatchContext, HandlerError, MessageContext};
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

/// How a handler takes its events: one message per call, or batches.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One event per call.
    Single(InvokeFn),
    /// `batch(...)`: up to `max` events per call.
    Batch(BatchSpec),
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
    pub(crate) shape: Shape,
    pub(crate) idempotent: bool,
    pub(crate) transactional: bool,
    /// `timeout = "..."`: the longest one call may take, in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// The event type, for the topology document.
    pub(crate) event: Option<EventSpec>,
}

/// The event type a handler takes: its name as written in the fn's signature, and its JSON
/// Schema when it derives `schemars::JsonSchema` (feature `schemars`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct EventSpec {
    pub name: &'static str,
    pub schema: crate::schema::SchemaFn,
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
        shape: Shape,
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
            shape,
            idempotent: false,
            transactional: false,
            timeout_ms: None,
            event: None,
        }
    }

    /// Sets the event type.
    pub const fn event(mut self, event: EventSpec) -> Self {
        self.event = Some(event);
        self
    }

    /// Sets `timeout = "..."` (milliseconds).
    pub const fn timeout(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Its batch spec, when it is a batch handler.
    pub(crate) fn batch(&self) -> Option<&BatchSpec> {
        match &self.shape {
            Shape::Batch(batch) => Some(batch),
            Shape::Single(_) => None,
        }
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
