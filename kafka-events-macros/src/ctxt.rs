//! The error collector every check writes to (serde_derive's `Ctxt`): parsing and checking go on
//! after an error so that all of them are reported at once, and the collector cannot be
//! forgotten — dropping it without [`Ctxt::check`] panics, so a new check that records errors
//! nobody reports fails every test that expands a handler.

use std::cell::RefCell;

/// Collects the errors of one expansion.
pub(crate) struct Ctxt {
    /// `None` once checked.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Self { errors: RefCell::new(Some(Vec::new())) }
    }

    /// Records `error`; the expansion goes on and reports it with the others.
    pub(crate) fn push(&self, error: syn::Error) {
        self.errors.borrow_mut().as_mut().expect("errors recorded after Ctxt::check").push(error);
    }

    /// Records `error`, if it is one, and gives back the value otherwise.
    pub(crate) fn ok<T>(&self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// Ends the collection: every recorded error, in the order recorded.
    pub(crate) fn check(self) -> Result<(), Vec<syn::Error>> {
        let errors = self.errors.borrow_mut().take().expect("Ctxt checked twice");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("a `Ctxt` was dropped without `check()`: its errors would never be reported");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    #[test]
    fn every_error_is_returned_in_order() {
        let cx = Ctxt::new();
        cx.push(syn::Error::new(Span::call_site(), "first"));
        assert_eq!(cx.ok(Ok::<_, syn::Error>(7)), Some(7));
        assert_eq!(cx.ok(Err::<u8, _>(syn::Error::new(Span::call_site(), "second"))), None);
        let errors: Vec<String> = cx.check().unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(errors, ["first", "second"]);
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    #[should_panic(expected = "dropped without `check()`")]
    fn a_forgotten_collector_panics() {
        let cx = Ctxt::new();
        cx.push(syn::Error::new(Span::call_site(), "never reported"));
    }
}
