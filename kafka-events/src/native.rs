//! The one place this crate calls librdkafka's C API itself: reading a partition's queue a run of
//! messages at a time (`rd_kafka_consume_batch_queue`), which rust-rdkafka does not offer.
//!
//! rust-rdkafka reads one message per call: each is a queue lock, a poll bookkeeping pass, an
//! event wrapped in an `Arc` (an allocation) and an event destroyed — ~1,700 instructions per
//! message, half of a no-op handler's whole cost on top of librdkafka's fetch. One batch call
//! pays the poll bookkeeping once per run and wraps nothing.
//!
//! The rules this module keeps, each argued at its `unsafe` block:
//! - a [`BatchQueue`] holds its own reference to the partition's queue (refcounted by
//!   librdkafka) and must be dropped before the consumer it came from: its owner keeps it next to
//!   the partition queue that holds the consumer, declared first (fields drop in order);
//! - a [`Fetched`] message borrows its `BatchQueue` (`'q`), so it cannot outlive it, and is
//!   destroyed exactly once, by its `Drop`;
//! - a message's bytes are borrowed from it and live as long as it does; its headers are read
//!   once, through `&mut`, before it is shared (librdkafka parses and caches them on first
//!   access, a write through a `const` pointer).
//!
//! And one read past the public API, in [`unparsed_headers`]: asked for a message's headers,
//! librdkafka allocates, zeroes and frees a parse buffer even for a message without any (~1,000
//! instructions, a ninth of a no-op handler's whole cost), and for one with headers allocates
//! each into a list freed with the message (~4,000 for the three the runtime's publisher
//! writes). The record's header section as fetched — its pointer and length — sits in
//! librdkafka's private `rd_kafka_msg_t`, whose layout is mirrored here ([`MsgPrefix`]) for
//! exactly the librdkafka version it was read from ([`AUDITED_VERSION`]); the runtime copies
//! that section in one piece (`HeaderCopy::from_record`). With any other version linked, or a
//! section that is not well-formed, the public call decides.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Timestamp;
use rdkafka::types::RDKafkaErrorCode;

/// Messages one [`BatchQueue::read`] call takes at most.
pub(crate) const MAX_RUN: usize = 256;

/// The librdkafka version whose `rd_kafka_msg_t` [`MsgPrefix`] mirrors (2.12.1, the one
/// rdkafka-sys 4.10 bundles). A test fails when the bundled version changes, so that an upgrade
/// re-reads `rdkafka_msg.h` before it moves this.
const AUDITED_VERSION: i32 = 0x020c_01ff;

/// The start of librdkafka 2.12.1's private `rd_kafka_msg_t` (`src/rdkafka_msg.h`), down to the
/// unparsed headers of a consumed message (`rkm_u.consumer.binhdrs`, a `rd_kafkap_bytes_t`).
/// `repr(C)` lays it out as the C compiler does the original.
#[repr(C)]
struct MsgPrefix {
    /// `rkm_rkmessage`, the public message (its first field).
    _rkmessage: rdsys::rd_kafka_message_t,
    /// `rkm_link` (`TAILQ_ENTRY`: next, previous).
    _link: [*mut std::ffi::c_void; 2],
    /// `rkm_flags`.
    flags: std::ffi::c_int,
    /// `rkm_tstype` (an enum).
    _tstype: std::ffi::c_int,
    /// `rkm_timestamp`.
    _timestamp: i64,
    /// `rkm_headers`: the parsed headers, once parsed.
    headers: *mut std::ffi::c_void,
    /// `rkm_status` (an enum).
    _status: std::ffi::c_int,
    /// `rkm_broker_id`.
    _broker_id: i32,
    /// `rkm_u.consumer.binhdrs` (the union's members both start with 8-byte-aligned fields).
    binhdrs: KafkaBytes,
}

/// librdkafka's `rd_kafkap_bytes_t`, without its trailing inline bytes.
#[repr(C)]
struct KafkaBytes {
    /// `-1` null, `0` empty, else the length of `data`.
    len: i32,
    data: *const u8,
}

/// `RD_KAFKA_MSG_F_PRODUCER`: a message of the producer (its `rkm_u` is the other member).
const MSG_F_PRODUCER: std::ffi::c_int = 0x40000;

/// Whether the linked librdkafka is the one [`MsgPrefix`] mirrors.
fn layout_is_audited() -> bool {
    static AUDITED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: `rd_kafka_version` takes nothing and only returns a constant.
    *AUDITED.get_or_init(|| unsafe { rdsys::rd_kafka_version() } == AUDITED_VERSION)
}

/// The header section of a consumed message's record as fetched (the count, then the headers,
/// in Kafka's record format) while librdkafka has not parsed it; `None` when it has, for
/// another librdkafka version, or when the record carries no section.
fn unparsed_headers<'m>(message: NonNull<rdsys::rd_kafka_message_t>, audited: bool) -> Option<&'m [u8]> {
    if !audited {
        return None;
    }
    // SAFETY: with the audited version linked, every `rd_kafka_message_t` librdkafka hands a
    // consumer is the first field of a live `rd_kafka_msg_t` (`rd_kafka_message2msg` is that
    // cast), whose start `MsgPrefix` mirrors field for field; the message is live and held by
    // the caller, and only plain fields are read.
    let msg = unsafe { message.cast::<MsgPrefix>().as_ref() };
    if !msg.headers.is_null() || msg.flags & MSG_F_PRODUCER != 0 || msg.binhdrs.data.is_null() {
        return None;
    }
    let len = usize::try_from(msg.binhdrs.len).ok().filter(|len| *len > 0)?;
    // SAFETY: `binhdrs` points at `len` bytes of the message's fetch buffer, which the message
    // holds a reference to until it is destroyed — the same bytes `rd_kafka_message_headers`
    // would parse. The caller ties `'m` to its borrow of the message.
    Some(unsafe { std::slice::from_raw_parts(msg.binhdrs.data, len) })
}

/// A reference of ours to one partition's fetch queue (see the module docs).
pub(crate) struct BatchQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// Whether [`unparsed_headers`] may read the messages' private layout.
    audited: bool,
}

// SAFETY: librdkafka's queues are locked internally; a queue handle may be used and destroyed
// from any thread.
unsafe impl Send for BatchQueue {}
// SAFETY: as above — `read` takes `&self` and librdkafka serialises concurrent pops.
unsafe impl Sync for BatchQueue {}

impl BatchQueue {
    /// Our reference to the queue of `topic`'s `partition` in `consumer` (the one
    /// `split_partition_queue` split off); `None` when librdkafka does not know the partition.
    /// The caller keeps it only while `consumer` lives (see the module docs).
    pub(crate) fn of<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partition: i32) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is live for the duration of the call (we borrow the
        // consumer), `topic` is a NUL-terminated string librdkafka only reads during the call.
        // The result is a new reference (or null), released by `Drop`.
        let queue =
            unsafe { rdsys::rd_kafka_queue_get_partition(consumer.client().native_ptr(), topic.as_ptr(), partition) };
        NonNull::new(queue).map(|queue| Self { queue, audited: layout_is_audited() })
    }

    /// Takes up to `max` (at most [`MAX_RUN`]) messages waiting in the queue, without waiting,
    /// and gives each to `each` in offset order — a consumer error as `Err`; how many it took.
    pub(crate) fn read<'q>(&'q self, max: usize, mut each: impl FnMut(Result<Fetched<'q>, KafkaError>)) -> usize {
        let mut run = [std::ptr::null_mut::<rdsys::rd_kafka_message_t>(); MAX_RUN];
        let max = max.min(MAX_RUN);
        // SAFETY: `self.queue` is a live queue reference (held until `Drop`); `run` has room for
        // `max` pointers, which is all librdkafka writes; timeout 0 never blocks.
        let taken = unsafe { rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, run.as_mut_ptr(), max) };
        let Ok(taken) = usize::try_from(taken) else {
            // -1: librdkafka refused the call (a queue it no longer serves); nothing was taken.
            tracing::warn!("librdkafka refused to read a partition's queue");
            return 0;
        };
        let taken = taken.min(max);
        for &message in &run[..taken] {
            let Some(message) = NonNull::new(message) else { continue };
            let fetched = Fetched { message, audited: self.audited, _queue: PhantomData };
            match fetched.error() {
                None => each(Ok(fetched)),
                Some(error) => each(Err(error)), // `fetched` is destroyed here
            }
        }
        taken
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        // SAFETY: the reference `of` obtained, released once; every message borrowed from it is
        // gone (`Fetched<'q>` borrows `self`), and the consumer outlives it (module docs).
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

/// One consumed message as librdkafka holds it, borrowed from the [`BatchQueue`] it was read
/// from; destroyed (its fetch buffer released) when dropped.
pub(crate) struct Fetched<'q> {
    message: NonNull<rdsys::rd_kafka_message_t>,
    audited: bool,
    _queue: PhantomData<&'q BatchQueue>,
}

// SAFETY: a consumed message may be read and destroyed from any thread; the only mutation,
// the header parse, needs `&mut` (`copy_headers`).
unsafe impl Send for Fetched<'_> {}
// SAFETY: through `&self` only immutable fields are read (see `Send`).
unsafe impl Sync for Fetched<'_> {}

impl Fetched<'_> {
    fn raw(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: the pointer is the live message librdkafka handed us; it is destroyed only by
        // `Drop`, so it is valid for as long as `self` is borrowed.
        unsafe { self.message.as_ref() }
    }

    /// The consumer error this message carries instead of data, if any.
    fn error(&self) -> Option<KafkaError> {
        let err = self.raw().err;
        (err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| KafkaError::MessageConsumption(RDKafkaErrorCode::from(err)))
    }

    /// The key; `None` for a null key.
    pub(crate) fn key(&self) -> Option<&[u8]> {
        let raw = self.raw();
        // SAFETY: librdkafka's `key`/`key_len` describe bytes owned by the message, valid until it
        // is destroyed — after the borrow of `self` ends.
        (!raw.key.is_null()).then(|| unsafe { std::slice::from_raw_parts(raw.key.cast::<u8>(), raw.key_len) })
    }

    /// The payload; `None` for a null value (a tombstone).
    pub(crate) fn payload(&self) -> Option<&[u8]> {
        let raw = self.raw();
        // SAFETY: as for `key`, with `payload`/`len`.
        (!raw.payload.is_null()).then(|| unsafe { std::slice::from_raw_parts(raw.payload.cast::<u8>(), raw.len) })
    }

    /// The partition.
    pub(crate) fn partition(&self) -> i32 {
        self.raw().partition
    }

    /// The offset.
    pub(crate) fn offset(&self) -> i64 {
        self.raw().offset
    }

    /// The timestamp and its kind.
    pub(crate) fn timestamp(&self) -> Timestamp {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message; librdkafka writes `kind` and only reads the message.
        let millis = unsafe { rdsys::rd_kafka_message_timestamp(self.message.as_ptr(), &mut kind) };
        match kind {
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => Timestamp::CreateTime(millis),
            rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => Timestamp::LogAppendTime(millis),
            _ => Timestamp::NotAvailable,
        }
    }

    /// The record's header section as fetched (see [`unparsed_headers`]), while librdkafka has
    /// not parsed it: its count, then its headers in Kafka's record format.
    pub(crate) fn header_section(&self) -> Option<&[u8]> {
        unparsed_headers(self.message, self.audited)
    }

    /// The headers collected into `B` (name, value; in wire order), `None` when there are none,
    /// as librdkafka parses them. `&mut`: librdkafka parses them on the first call and caches
    /// the result in the message.
    pub(crate) fn copy_headers<B>(&mut self) -> Option<B>
    where
        B: for<'h> FromIterator<(&'h str, Option<&'h [u8]>)>,
    {
        let mut headers = std::ptr::null_mut();
        // SAFETY: a live message we hold exclusively (`&mut self`), so the parse-and-cache write
        // races with nothing; `headers` points into the message and lives as long as it does.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.message.as_ptr(), &mut headers) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return None;
        }
        let mut index = 0;
        let copy: B = std::iter::from_fn(|| {
            let (mut name, mut value, mut size): (*const c_char, *const std::ffi::c_void, usize) =
                (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: `headers` is the message's live header list; librdkafka writes the three
            // out-pointers, which point into that list, or answers NOENT past the last header.
            let err = unsafe { rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size) };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            index += 1;
            // SAFETY: librdkafka's header names are NUL-terminated and live with the list.
            let name = unsafe { CStr::from_ptr(name) }.to_str().unwrap_or_default();
            // SAFETY: `value`/`size` describe the header's bytes (null for a header without a
            // value), living with the list.
            let value = (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
            Some((name, value))
        })
        .collect();
        Some(copy)
    }
}

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        // SAFETY: the message librdkafka handed us, destroyed exactly once, here; nothing borrowed
        // from it outlives `self`.
        unsafe { rdsys::rd_kafka_message_destroy(self.message.as_ptr()) }
    }
}

#[cfg(test)]
mod tests;
