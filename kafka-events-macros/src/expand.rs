//! The expansion: the user's fn unchanged, a bound probe on the event type, one
//! `inventory::submit!` — all inside `const __kafka_events_register_<fn>: () = { ... };`.
//!
//! The const is named (not `_`) so that the attribute on an associated fn inside an `impl` block
//! gives one error — rustc's "cannot find function `<fn>`", spanned on the fn's name — instead of
//! a second one about `_` not being a valid associated-const name. A proc macro cannot see
//! whether it sits in an `impl` block, so the message cannot be ours (README "Not yet").

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

use crate::attr::{Dlq, HandlerArgs};
use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error =
                syn::Error::new(Span::call_site(), "`#[kafka_handler]` goes on an `async fn`").to_compile_error();
            return quote! { #error #item };
        }
    };
    let cx = Ctxt::new();
    let args = HandlerArgs::parse(&cx, args);
    let batch = args.as_ref().is_some_and(|a| a.batch.is_some());
    let event_type = check_signature(&function, batch, &cx);
    match (cx.check(), args, event_type) {
        (Ok(()), Some(args), Some(event_type)) => register(&function, &args, event_type),
        (result, _, _) => {
            let errors = result.err().unwrap_or_default().into_iter().map(|e| e.to_compile_error());
            quote! { #function #(#errors)* }
        }
    }
}

/// Checks the fn's shape; returns the event type when there is one.
fn check_signature<'a>(function: &'a ItemFn, batch: bool, cx: &Ctxt) -> Option<&'a syn::Type> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        cx.push(syn::Error::new(sig.fn_token.span, "`#[kafka_handler]` requires an `async fn`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.push(syn::Error::new(
            sig.generics.span(),
            "`#[kafka_handler]` functions cannot be generic; take a concrete event type",
        ));
    }
    if let ReturnType::Default = sig.output {
        cx.push(syn::Error::new(
            sig.paren_token.span.close(),
            "`#[kafka_handler]` functions must return `Result<(), E>` where `E: Into<HandlerError>`",
        ));
    }
    let mut inputs = sig.inputs.iter();
    let event_type = match inputs.next() {
        Some(FnArg::Typed(arg)) => Some(&*arg.ty),
        Some(FnArg::Receiver(receiver)) => {
            cx.push(syn::Error::new(receiver.span(), "`#[kafka_handler]` cannot be a method; use a free `async fn`"));
            None
        }
        None => {
            cx.push(syn::Error::new(
                sig.paren_token.span.join(),
                "`#[kafka_handler]` functions take the event as their first argument, e.g. `async fn on_order(event: OrderCreated, ctx: MessageContext)`",
            ));
            None
        }
    };
    if let Some(FnArg::Typed(context)) = inputs.next() {
        let (expected, other) =
            if batch { ("BatchContext", "MessageContext") } else { ("MessageContext", "BatchContext") };
        match &*context.ty {
            syn::Type::Reference(reference) => cx.push(syn::Error::new_spanned(
                reference,
                format!("take the context by value: `ctx: {expected}` (each call gets its own)"),
            )),
            syn::Type::Path(path) if path.path.segments.last().is_some_and(|s| s.ident == other) => {
                cx.push(syn::Error::new_spanned(
                    path,
                    if batch {
                        "a `batch` handler's context is a `BatchContext` (one `MessageContext` per event inside it): `ctx: BatchContext`"
                    } else {
                        "a handler's context is a `MessageContext`; `BatchContext` is for `batch(...)` handlers: `ctx: MessageContext`"
                    },
                ))
            }
            _ => {}
        }
    }
    if let Some(extra) = inputs.next() {
        cx.push(syn::Error::new(
            extra.span(),
            if batch {
                "`batch` handlers take at most two arguments: the events (`Vec<T>`) and a `BatchContext`"
            } else {
                "`#[kafka_handler]` functions take at most two arguments: the event and a `MessageContext`"
            },
        ));
    }
    if !batch {
        return event_type;
    }
    let element = event_type.and_then(vec_element);
    if let (Some(ty), None) = (event_type, element) {
        cx.push(syn::Error::new(
            ty.span(),
            "a `batch` handler takes its events as a `Vec`, e.g. `async fn on_metrics(events: Vec<Metric>, ctx: BatchContext)`",
        ));
    }
    element
}

/// `E` of a return type written `Result<(), E>` (any path ending in `Result` with two arguments).
fn result_error_type(output: &ReturnType) -> Option<&syn::Type> {
    let ReturnType::Type(_, ty) = output else { return None };
    let syn::Type::Path(path) = &**ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match (args.args.first(), args.args.iter().nth(1), args.args.len()) {
        (Some(syn::GenericArgument::Type(_)), Some(syn::GenericArgument::Type(error)), 2) => Some(error),
        _ => None,
    }
}

/// `T` of `Vec<T>` (written `Vec<T>`, `std::vec::Vec<T>` …).
fn vec_element(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first() {
        Some(syn::GenericArgument::Type(element)) if args.args.len() == 1 => Some(element),
        _ => None,
    }
}

fn register(function: &ItemFn, args: &HandlerArgs, event_type: &syn::Type) -> TokenStream {
    let name = &function.sig.ident;
    let name_str = name.to_string();
    let topic = args.topic.as_ref().map(ToTokens::to_token_stream).unwrap_or_default();
    let call = if let Some(FnArg::Typed(context)) = function.sig.inputs.iter().nth(1) {
        // Spanned on the declared context type: a wrong one is reported there.
        let ctx = quote_spanned! {context.ty.span()=> ctx};
        quote! { #name(event, #ctx) }
    } else {
        quote! { { let _ = ctx; #name(event) } }
    };
    let id_of = match &args.idempotent {
        Some((_, Some(field))) => quote! {
            ::core::option::Option::Some((|event: &#event_type| ::std::string::ToString::to_string(&event.#field)) as fn(&#event_type) -> ::std::string::String)
        },
        _ => quote!(::core::option::Option::None),
    };
    let idempotent = args.idempotent.as_ref().map(|_| quote!(.idempotent()));
    let transactional = args.transactional.map(|_| quote!(.transactional()));
    let output_span = match &function.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => function.sig.span(),
    };
    // A declared `Result<(), E>` converts `E` through the public `IntoHandlerError`, spanned on
    // `E`: a wrong error type is reported there, once, in the runtime's words. Other spellings
    // (`anyhow::Result<()>`, aliases) go through `HandlerOutput`, spanned on the return type.
    let into_result = match result_error_type(&function.sig.output) {
        Some(error) => quote_spanned! {error.span()=>
            (|result: ::core::result::Result<(), #error>| result.map_err(<#error as ::kafka_events::IntoHandlerError>::into_handler_error))
        },
        None => quote_spanned! {output_span=> ::kafka_events::__private::HandlerOutput::into_handler_result },
    };
    let retry = args.retry.as_ref().map(|retry| {
        let some_u32 = |v: Option<u32>| v.map_or_else(|| quote!(::core::option::Option::None), |v| quote!(::core::option::Option::Some(#v)));
        let some_u64 = |v: Option<u64>| v.map_or_else(|| quote!(::core::option::Option::None), |v| quote!(::core::option::Option::Some(#v)));
        let max = some_u32(retry.max);
        let initial = some_u64(retry.initial_ms);
        let max_delay = some_u64(retry.max_delay_ms);
        let backoff = retry.backoff.map_or_else(
            || quote!(::core::option::Option::None),
            |b| {
                let variant = syn::Ident::new(b, Span::call_site());
                quote!(::core::option::Option::Some(::kafka_events::__private::Backoff::#variant))
            },
        );
        let jitter = retry.jitter.map_or_else(|| quote!(::core::option::Option::None), |j| quote!(::core::option::Option::Some(#j)));
        let mode = retry.mode.map_or_else(
            || quote!(::core::option::Option::None),
            |m| {
                let variant = syn::Ident::new(m, Span::call_site());
                quote!(::core::option::Option::Some(::kafka_events::__private::RetryMode::#variant))
            },
        );
        quote! {
            .retry(::kafka_events::__private::RetrySpec {
                max: #max, backoff: #backoff, initial_ms: #initial, max_delay_ms: #max_delay, jitter: #jitter, mode: #mode,
            })
        }
    });
    let dlq = args.dlq.as_ref().map(|dlq| match dlq {
        Dlq::Default => quote!(.dlq(::kafka_events::__private::DlqSpec::Default)),
        Dlq::Topic(topic) => quote!(.dlq(::kafka_events::__private::DlqSpec::Topic(#topic))),
    });
    let concurrency = (args.concurrency.is_some() || args.keyless.is_some()).then(|| {
        let max = args.concurrency.unwrap_or(1);
        let keyless = syn::Ident::new(args.keyless.map_or("Ordered", |(k, _)| k), Span::call_site());
        quote!(.concurrency(#max, ::kafka_events::__private::Keyless::#keyless))
    });
    let circuit = args.circuit.as_ref().map(|c| {
        let failures = c
            .failures
            .map_or_else(|| quote!(::core::option::Option::None), |n| quote!(::core::option::Option::Some(#n)));
        let reset = c
            .reset_ms
            .map_or_else(|| quote!(::core::option::Option::None), |n| quote!(::core::option::Option::Some(#n)));
        quote!(.circuit(::kafka_events::__private::CircuitSpec { failures: #failures, reset_ms: #reset }))
    });
    let provision = args.provision.as_ref().map(|p| {
        let none = || quote!(::core::option::Option::None);
        let partitions = p.partitions.map_or_else(none, |n| quote!(::core::option::Option::Some(#n)));
        let retention = p.retention_ms.map_or_else(none, |n| quote!(::core::option::Option::Some(#n)));
        let cleanup = p.cleanup.as_ref().map_or_else(none, |c| quote!(::core::option::Option::Some(#c)));
        quote!(.provision(::kafka_events::__private::ProvisionSpec { partitions: #partitions, retention_ms: #retention, cleanup: #cleanup }))
    });
    let timeout = args.timeout_ms.map(|ms| quote!(.timeout(#ms)));
    // The event type as written (`models::OrderCreated`), and its JSON Schema when it derives
    // `schemars::JsonSchema` (autoref specialization on the concrete type: `None` otherwise).
    let event_name = event_type.to_token_stream().to_string().replace(' ', "");
    let event = quote! {
        .event(::kafka_events::__private::EventSpec {
            name: #event_name,
            schema: || {
                #[allow(unused_imports)]
                use ::kafka_events::__private::{SchemaFallback as _, SchemaOf as _};
                (&&::kafka_events::__private::SchemaProbe::<#event_type>::new()).json_schema()
            },
        })
    };
    // The `T: Event` bound of `invoke` is the probe: spanned on the user's type, so rustc points
    // there and shows `Event`'s `on_unimplemented` note.
    let invoke = quote_spanned! {event_type.span()=>
        ::kafka_events::__private::invoke::<#event_type, _, _>
    };
    let (functions, shape) = match &args.batch {
        None => (
            quote! {
                const __kafka_events_invoke: ::kafka_events::__private::InvokeFn = |payload, ctx| {
                    #invoke(payload, ctx, #id_of, |event, ctx| async move { #into_result(#call.await) })
                };
            },
            quote!(::kafka_events::__private::Shape::Single(__kafka_events_invoke)),
        ),
        Some(batch) => {
            let decode = quote_spanned! {event_type.span()=> ::kafka_events::__private::decode::<#event_type> };
            let (max, linger) = (batch.max, batch.linger_ms);
            let call = if function.sig.inputs.len() == 2 {
                quote! { #name(events, ctx) }
            } else {
                quote! { { let _ = ctx; #name(events) } }
            };
            (
                quote! {
                    const __kafka_events_decode: ::kafka_events::__private::DecodeFn = |payload| #decode(payload, #id_of);
                    const __kafka_events_call: ::kafka_events::__private::BatchCallFn = |events, ctx| {
                        ::kafka_events::__private::call_batch::<#event_type, _, _>(events, ctx, |events, ctx| async move { #into_result(#call.await) })
                    };
                },
                quote! {
                    ::kafka_events::__private::Shape::Batch(::kafka_events::__private::BatchSpec {
                        max: #max, linger_ms: #linger, decode: __kafka_events_decode, call: __kafka_events_call,
                    })
                },
            )
        }
    };
    let register = quote::format_ident!("__kafka_events_register_{}", name);
    quote! {
        #function

        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code, clippy::all)]
        const #register: () = {
            #functions
            ::kafka_events::__private::inventory::submit! {
                ::kafka_events::__private::HandlerRegistration::new(
                    #name_str,
                    ::core::module_path!(),
                    ::core::file!(),
                    ::core::line!(),
                    #topic,
                    #shape,
                )
                #retry
                #dlq
                #concurrency
                #circuit
                #provision
                #idempotent
                #transactional
                #timeout
                #event
            }
        };
    }
}
