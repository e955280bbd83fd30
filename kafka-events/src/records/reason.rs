//! Why a message failed, as the records written for it carry it: bounded once.

use std::fmt;

use crate::names::header;

/// A failure's reason cut to [`header::MAX_REASON_BYTES`] (at a character boundary, with a
/// marker saying how long it was), so that a reason quoting a large payload never makes a record
/// too large. Made only by [`Reason::new`], so every reason the runtime writes is bounded, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reason(String);

impl Reason {
    /// `reason`, bounded.
    pub(crate) fn new(reason: String) -> Self {
        if reason.len() <= header::MAX_REASON_BYTES {
            return Self(reason);
        }
        let marker = format!(" … [cut: {} bytes in all]", reason.len());
        let mut end = header::MAX_REASON_BYTES - marker.len();
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self(format!("{}{marker}", &reason[..end]))
    }

    /// The bounded text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Reason {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Reason {
    fn from(reason: &str) -> Self {
        Self::new(reason.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_at_a_character_boundary_with_a_marker() {
        assert_eq!(Reason::from("short").as_str(), "short");
        let long = format!("invalid type: string \"{}\"", "é".repeat(600_000));
        let cut = Reason::new(long.clone());
        assert!(cut.len() <= header::MAX_REASON_BYTES, "{}", cut.len());
        assert!(cut.starts_with("invalid type: string \"éé"));
        assert!(cut.ends_with(&format!(" … [cut: {} bytes in all]", long.len())), "{}", &cut[cut.len() - 60..]);
        let exact = "x".repeat(header::MAX_REASON_BYTES);
        assert_eq!(Reason::new(exact.clone()).as_str(), exact, "a reason at the limit is kept whole");
    }
}
