//! A consumed message's headers, copied out of librdkafka once and shared: by the runtime's
//! lookups by name (`traceparent`, `x-correlation-id`, the retry headers…) and by every attempt's
//! [`MessageContext`](crate::MessageContext). Kept as Kafka writes them in a record — per header
//! its name's length, the name, its value's length (`-1`: no value) and the value, lengths as
//! zigzag varints — in one shared buffer: a message read from its partition's queue has its
//! headers copied in one piece from the fetched record ([`HeaderCopy::from_record`]), never
//! parsed into librdkafka's list (an allocation per header) nor walked header by header.

use std::sync::Arc;

use rdkafka::message::Headers;

/// A message's headers in wire order (a name may repeat, a header may have no value). Cloning
/// shares the buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderCopy(Arc<[u8]>);

impl HeaderCopy {
    /// A copy of `headers`.
    pub(crate) fn of(headers: &impl Headers) -> Self {
        headers.iter().map(|h| (h.key, h.value)).collect()
    }

    /// The headers of a record from their section as the record carries it (the count, then
    /// the headers): `Some(None)` when there are none, `None` when the section is not
    /// well-formed (the caller then asks librdkafka). Bytes after the last header are ignored.
    pub(crate) fn from_record(section: &[u8]) -> Option<Option<Self>> {
        let mut rest = section;
        let count = varint(&mut rest)?;
        if count <= 0 {
            return (count == 0).then_some(None);
        }
        let start = section.len() - rest.len();
        let mut raw = Raw { rest };
        for _ in 0..count {
            raw.field()??;
            raw.field()?;
        }
        let end = section.len() - raw.rest.len();
        Some(Some(Self(section[start..end].into())))
    }

    /// Every header, in wire order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        // A name that is not UTF-8 reads as empty (Kafka's clients write names as UTF-8).
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

/// Appends `bytes` with its length (or `-1` for no value), as a record does.
fn put(buffer: &mut Vec<u8>, bytes: Option<&[u8]>) {
    let len = bytes.map_or(-1, |b| i64::try_from(b.len()).expect("a Kafka header is smaller than 4 GiB"));
    let mut zigzag = ((len << 1) ^ (len >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            buffer.push(byte);
            break;
        }
        buffer.push(byte | 0x80);
    }
    buffer.extend_from_slice(bytes.unwrap_or_default());
}

/// Takes a zigzag varint (at most 32 bits, as Kafka writes lengths and counts) off `rest`.
fn varint(rest: &mut &[u8]) -> Option<i64> {
    let mut value = 0u64;
    for shift in (0..35).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// The headers of a [`HeaderCopy`] as stored, in wire order.
struct Raw<'a> {
    rest: &'a [u8],
}

impl<'a> Raw<'a> {
    /// The next length-prefixed field; `None` inside for no value (length `-1`), `None` outside
    /// at the end or on a malformed field.
    fn field(&mut self) -> Option<Option<&'a [u8]>> {
        let len = varint(&mut self.rest)?;
        if len == -1 {
            return Some(None);
        }
        let (bytes, rest) = self.rest.split_at_checked(usize::try_from(len).ok()?)?;
        self.rest = rest;
        Some(Some(bytes))
    }
}

impl<'a> Iterator for Raw<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let name = self.field()??;
        Some((name, self.field()?))
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

    #[test]
    fn reads_a_records_header_section() {
        // What a record carries: the count (2, zigzag 4), then `trace` = `t-1` and `gone` without
        // a value (length -1, zigzag 1), then bytes of no header.
        let section = [&[4u8, 10][..], b"trace", &[6], b"t-1", &[8], b"gone", &[1], &[0xff, 0xff]].concat();
        let copy = HeaderCopy::from_record(&section).expect("well-formed").expect("two headers");
        assert_eq!(copy.iter().collect::<Vec<_>>(), [("trace", Some(&b"t-1"[..])), ("gone", None)]);
        assert_eq!(copy, [("trace", Some(&b"t-1"[..])), ("gone", None)].into_iter().collect(), "one format both ways");
        assert_eq!(HeaderCopy::from_record(&[0]), Some(None), "no headers");
        assert_eq!(HeaderCopy::from_record(&[]), None, "no count");
        assert_eq!(HeaderCopy::from_record(&[4, 10, b't']), None, "a name cut short");
        assert_eq!(HeaderCopy::from_record(&[2, 2, b'a']), None, "a header without its value's length");
        assert_eq!(HeaderCopy::from_record(&[3]), None, "a negative count");
        assert_eq!(HeaderCopy::from_record(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), None, "an overlong varint");
        // Lengths of more than one varint byte.
        let long = "v".repeat(300);
        let copy: HeaderCopy = [("long", Some(long.as_bytes()))].into_iter().collect();
        assert_eq!(copy.last("long"), Some(long.as_bytes()));
    }
}
