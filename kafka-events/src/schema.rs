//! The JSON Schema of a handler's event type, when it derives `schemars::JsonSchema` (feature
//! `schemars`); `None` otherwise. The generated code asks through autoref specialization on the
//! concrete event type, so a type without `JsonSchema` compiles and simply has no schema:
//!
//! ```ignore
//! use kafka_events::__private::{SchemaFallback as _, SchemaOf as _};
//! (&&SchemaProbe::<OrderCreated>::new()).json_schema()
//! ```
//!
//! Method lookup on the receiver `&&SchemaProbe<T>` first finds [`SchemaOf`] (implemented for
//! `&SchemaProbe<T>`, only for `T: JsonSchema` and only with the feature), and only after one
//! deref [`SchemaFallback`] (implemented for `SchemaProbe<T>`: none).

use std::marker::PhantomData;

/// The event's JSON Schema (draft-07, subschemas inlined so it can be embedded in another
/// document), or `None`.
#[doc(hidden)]
pub type SchemaFn = fn() -> Option<serde_json::Value>;

/// The type a handler's event schema is asked of.
#[doc(hidden)]
pub struct SchemaProbe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> SchemaProbe<T> {
    /// A probe of `T`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: ?Sized> Default for SchemaProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Every type: no schema.
#[doc(hidden)]
pub trait SchemaFallback {
    /// `None`.
    fn json_schema(&self) -> Option<serde_json::Value> {
        None
    }
}

impl<T: ?Sized> SchemaFallback for SchemaProbe<T> {}

/// Types deriving `schemars::JsonSchema` (with the `schemars` feature): their schema.
#[doc(hidden)]
pub trait SchemaOf {
    /// The schema.
    fn json_schema(&self) -> Option<serde_json::Value>;
}

#[cfg(feature = "schemars")]
impl<T: schemars::JsonSchema> SchemaOf for &SchemaProbe<T> {
    fn json_schema(&self) -> Option<serde_json::Value> {
        let generator = schemars::generate::SchemaSettings::draft07()
            .with(|settings| settings.inline_subschemas = true)
            .into_generator();
        let mut schema = generator.into_root_schema_for::<T>().to_value();
        // Embedded in another document, a root `$schema` would be a second dialect declaration.
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
        }
        Some(schema)
    }
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::{SchemaFallback as _, SchemaOf as _, SchemaProbe};

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Plain {
        id: String,
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the `&&` is the mechanism under test
    fn a_type_without_json_schema_has_none() {
        assert_eq!((&&SchemaProbe::<Plain>::new()).json_schema(), None);
    }

    #[cfg(feature = "schemars")]
    #[test]
    #[allow(clippy::needless_borrow)]
    fn a_json_schema_type_has_its_draft_07_schema_with_validator_constraints() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Line {
            sku: String,
        }
        #[derive(schemars::JsonSchema, validator::Validate)]
        #[allow(dead_code)]
        struct Order {
            #[validate(length(min = 1))]
            id: String,
            #[validate(range(min = 0.01))]
            amount: f64,
            lines: Vec<Line>,
        }
        let schema = (&&SchemaProbe::<Order>::new()).json_schema().expect("a schema");
        assert_eq!(schema["type"], "object", "{schema}");
        assert_eq!(schema["properties"]["id"]["minLength"], 1, "{schema}");
        assert_eq!(schema["properties"]["amount"]["minimum"], 0.01, "{schema}");
        assert_eq!(schema["properties"]["lines"]["items"]["properties"]["sku"]["type"], "string", "inlined: {schema}");
        assert!(schema.get("$schema").is_none() && schema.get("definitions").is_none(), "{schema}");
    }
}
