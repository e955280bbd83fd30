//! A consumed message's headers, copied out of librdkafka once and shared: by the runtime's
//! lookups by name (`traceparent`, `x-correlation-id`, the retry headers…) and by every attempt's
//! [`MessageContext`](crate::MessageContext). Through librdkafka each lookup walked every header,
//! converting each name; as one owned string per name and value, a copy cost two allocations per
//! header. Here all of them sit in one buffer: `[name length][name][value length][value]` per
//! header, lengths as little-endian `u32`, a missing value as length `u32::MAX`.

use std::sync::Arc;

use rdkafka::message::Headers;

/// The length that marks a header without a value.
const NO_VALUE: u32 = u32::MAX;

/// A message's headers in wire order (a name may repeat, a header may have no value). Cloning
/// shares the buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderCopy(Arc<[u8]>);

impl HeaderCopy {
    /// A copy of `headers`.
    pub(crate) fn of(headers: &impl Headers) -> Self {
        headers.iter().map(|h| (h.key, h.value)).collect()
    }

    /// Every header, in wire order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        // Names were `&str` when copied in.
        self.raw().map(|(name, value)| (std::str::from_utf8(name).unwrap_or_default(), value))
    }

    /// The value of the last header called `name` (names compared as bytes).
    pub(crate) fn last(&self, name: &str) -> Option<&[u8]> {
        let mut found = None;
        for (key, value) in self.raw() {
            if key == name.as_bytes() {
                found = Some(value);
            }
        }
        found.flatten()
    }

    /// How many headers there are.
    pub(crate) fn len(&self) -> usize {
        self.raw().count()
    }

    fn raw(&self) -> Raw<'_> {
        Raw { rest: &self.0 }
    }
}

impl<'a> FromIterator<(&'a str, Option<&'a [u8]>)> for HeaderCopy {
    fn from_iter<I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>>(headers: I) -> Self {
        // Room for the usual few headers (trace context, ids) without growing; the shared
        // buffer is then allocated once at its exact size.
        let mut buffer = Vec::with_capacity(256);
        for (name, value) in headers {
            put(&mut buffer, Some(name.as_bytes()));
            put(&mut buffer, value);
        }
        Self(buffer.into())
    }
}

/// Appends `bytes` with its length (or the no-value mark).
fn put(buffer: &mut Vec<u8>, bytes: Option<&[u8]>) {
    let len = bytes.map_or(NO_VALUE, |b| u32::try_from(b.len()).expect("a Kafka header is smaller than 4 GiB"));
    buffer.extend_from_slice(&len.to_le_bytes());
    buffer.extend_from_slice(bytes.unwrap_or_default());
}

/// The headers of a [`HeaderCopy`] as stored, in wire order.
struct Raw<'a> {
    rest: &'a [u8],
}

impl<'a> Raw<'a> {
    /// The next length-prefixed field; `None` for the no-value mark.
    fn take(&mut self) -> Option<Option<&'a [u8]>> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len);
        if len == NO_VALUE {
            self.rest = rest;
            return Some(None);
        }
        let (bytes, rest) = rest.split_at_checked(len as usize)?;
        self.rest = rest;
        Some(Some(bytes))
    }
}

impl<'a> Iterator for Raw<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let name = self.take()??;
        Some((name, self.take()?))
    }
}

impl std::fmt::Debug for HeaderCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};

    #[test]
    fn keeps_order_repeats_and_missing_values() {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "a", value: Some("1") })
            .insert(Header { key: "empty", value: Some("") })
            .insert::<[u8]>(Header { key: "none", value: None })
            .insert(Header { key: "a", value: Some("2") });
        let copy = HeaderCopy::of(&headers);
        let all: Vec<_> = copy.iter().collect();
        assert_eq!(all, [("a", Some(&b"1"[..])), ("empty", Some(&b""[..])), ("none", None), ("a", Some(&b"2"[..]))]);
        assert_eq!(copy.len(), 4);
        assert_eq!(copy.last("a"), Some(&b"2"[..]), "the last of a repeated name");
        assert_eq!(copy.last("none"), None);
        assert_eq!(copy.last("empty"), Some(&b""[..]));
        assert_eq!(copy.last("missing"), None);
        assert_eq!(HeaderCopy::default().iter().count(), 0);
        assert_eq!(format!("{copy:?}").matches("\"a\"").count(), 2);
    }
}
