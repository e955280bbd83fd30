//! Dead-letter topics: the records the processor writes (headers listed in [`crate::names::header`]) and the
//! operations people run on them — stats, peek and replay ([`DeadLetters`]), also available as the
//! `kafka-events dlq …` command.

mod ops;
pub(crate) mod records;

pub use ops::{DeadLetter, DeadLetters, DlqError, DlqStats, PartitionStats, ReplayItem, ReplayOptions, ReplayReport};
