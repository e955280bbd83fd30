//! Dead-letter topics: the records the processor writes (built in `records`, headers listed in
//! [`crate::names::header`]) and the
//! operations people run on them — stats, peek and replay ([`DeadLetters`]), also available as the
//! `kafka-events dlq …` command.

mod ops;

pub use ops::{DeadLetter, DeadLetters, DlqError, DlqStats, PartitionStats, ReplayItem, ReplayOptions, ReplayReport};
