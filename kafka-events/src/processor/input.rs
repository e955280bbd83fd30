//! The typed step of the pipeline: decode (serde) → validate (validator) → the handler's future.
//! Generated code calls [`invoke`] with the handler's payload type; everything after it is untyped.

use std::future::Future;

use serde::de::DeserializeOwned;
use validator::Validate;

use crate::abi::{Decoded, HandlerFuture, InputError, Invocation};
use crate::handler::{BatchContext, HandlerError, MessageContext};

/// A type a handler can take as its event: JSON-decodable and validatable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the event of a `#[kafka_handler]`",
    label = "this type must implement `serde::Deserialize` and `validator::Validate`",
    note = "add `#[derive(serde::Deserialize, validator::Validate)]` to `{Self}`"
)]
pub trait Event: DeserializeOwned + Validate + Send + 'static {}

impl<T: DeserializeOwned + Validate + Send + 'static> Event for T {}

/// What a handler may return: `Result<(), E>` with `E: Into<HandlerError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the return type of a `#[kafka_handler]`",
    label = "return `Result<(), E>` where `E: Into<HandlerError>`",
    note = "`HandlerError`, `anyhow::Error`, `Box<dyn Error + Send + Sync>` and every `std::error::Error + Send + Sync + 'static` type convert into `HandlerError`"
)]
pub trait HandlerOutput {
    /// The outcome as the processor sees it.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl<E: Into<HandlerError>> HandlerOutput for Result<(), E> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// Decodes `payload` as `T`, validates it, reads its id (`id_of`, from `idempotent(id = "...")`)
/// and returns `handler`'s future. Decode and validation failures are returned as
/// [`InputError`]s: the processor dead-letters them without invoking the handler.
#[doc(hidden)]
pub fn invoke<T, F, Fut>(
    payload: Option<&[u8]>,
    ctx: MessageContext,
    id_of: Option<fn(&T) -> String>,
    handler: F,
) -> Result<Invocation, InputError>
where
    T: Event,
    F: FnOnce(T, MessageContext) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let event: T = decode_valid(payload)?;
    let event_id = id_of.map(|id_of| id_of(&event));
    Ok(Invocation { future: Box::pin(handler(event, ctx)), event_id })
}

/// Decodes and validates one message of a batch handler's batch.
#[doc(hidden)]
pub fn decode<T: Event>(payload: Option<&[u8]>, id_of: Option<fn(&T) -> String>) -> Result<Decoded, InputError> {
    let event: T = decode_valid(payload)?;
    let event_id = id_of.map(|id_of| id_of(&event));
    Ok(Decoded { event: Box::new(event), event_id })
}

/// Calls a batch handler with events [`decode`] decoded as `T`.
#[doc(hidden)]
pub fn call_batch<T, F, Fut>(events: Vec<Decoded>, ctx: BatchContext, handler: F) -> HandlerFuture
where
    T: Event,
    F: FnOnce(Vec<T>, BatchContext) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let events: Vec<T> = events
        .into_iter()
        .map(|decoded| match decoded.event.downcast::<T>() {
            Ok(event) => *event,
            // The generated code pairs `decode::<T>` with `call_batch::<T>`.
            Err(_) => unreachable!("a batch event decoded as another type than its handler takes"),
        })
        .collect();
    Box::pin(handler(events, ctx))
}

fn decode_valid<T: Event>(payload: Option<&[u8]>) -> Result<T, InputError> {
    let payload = payload.ok_or_else(|| InputError::decode("message has no value (tombstone)"))?;
    let event: T = serde_json::from_slice(payload)
        .map_err(|e| InputError::decode(format!("invalid JSON for `{}`: {e}", short_type_name::<T>())))?;
    event.validate().map_err(|e| {
        InputError::validation(format!("`{}` failed validation: {}", short_type_name::<T>(), describe(&e)))
    })?;
    Ok(event)
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// `amount: range (min = 0.01; got 0.0)`, one clause per failed rule, fields sorted.
fn describe(errors: &validator::ValidationErrors) -> String {
    let mut fields: Vec<_> = errors.field_errors().into_iter().collect();
    if fields.is_empty() {
        return one_line(&errors.to_string());
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let mut clauses = Vec::new();
    for (field, field_errors) in fields {
        for error in field_errors {
            let clause = match &error.message {
                Some(message) => message.to_string(),
                None => {
                    let mut params: Vec<String> =
                        error.params.iter().filter(|(k, _)| *k != "value").map(|(k, v)| format!("{k} = {v}")).collect();
                    params.sort();
                    if let Some(value) = error.params.get("value") {
                        params.push(format!("got {value}"));
                    }
                    if params.is_empty() {
                        error.code.to_string()
                    } else {
                        format!("{} ({})", error.code, params.join("; "))
                    }
                }
            };
            clauses.push(format!("{field}: {clause}"));
        }
    }
    clauses.join(", ")
}

fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Validate)]
    struct Order {
        #[validate(length(min = 1))]
        id: String,
    }

    fn ctx() -> MessageContext {
        MessageContext {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            headers: Default::default(),
            attempt: 1,
            trace: crate::trace::TraceContext::new_root(),
            claim: Default::default(),
            publisher: None,
        }
    }

    fn call(payload: Option<&[u8]>) -> Result<Invocation, InputError> {
        invoke::<Order, _, _>(payload, ctx(), None, |order, _| async move {
            assert!(!order.id.is_empty());
            Ok(())
        })
    }

    #[test]
    fn decode_and_validation_errors_are_classified() {
        let err = call(Some(b"{not json")).err().unwrap();
        assert_eq!(err.kind, crate::ErrorKind::Decode);
        assert!(err.reason.starts_with("invalid JSON for `Order`"), "{}", err.reason);
        let err = call(Some(br#"{"id":""}"#)).err().unwrap();
        assert_eq!(err.kind, crate::ErrorKind::Validation);
        assert_eq!(err.reason, "`Order` failed validation: id: length (min = 1; got \"\")");
        let err = call(None).err().unwrap();
        assert!(err.reason.contains("tombstone"));
        assert!(call(Some(br#"{"id":"a"}"#)).is_ok());
    }
}
