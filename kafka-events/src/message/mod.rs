//! The consumed message, from its read to its outcome: how the runtime holds it ([`Received`],
//! borrowed from librdkafka's fetch buffer), reads it ([`Consumed`], one trait for every kind of
//! message), copies its headers once ([`HeaderCopy`]), keeps it past its lane when a retry record
//! or a dead letter is published from it ([`Kept`]), and where it first came from ([`Origin`]).
//!
//! Everything that *reads* a message lives here; everything the runtime *writes* from one (retry
//! records, dead letters) lives in [`crate::records`].

mod header_copy;
mod kept;
mod origin;
mod received;

pub(crate) use header_copy::HeaderCopy;
pub(crate) use kept::Kept;
pub(crate) use origin::Origin;
pub(crate) use origin::{correlation_of, header_str};
pub(crate) use received::{Consumed, Received};

/// A message key as a handler's context keeps it: inline up to 32 bytes.
pub(crate) type Key = smallvec::SmallVec<[u8; 32]>;
