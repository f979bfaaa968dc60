//! `shardmq-codec`: the MQTT 3.1 (protocol level 3), 3.1.1 (level 4) and 5.0 (level 5) wire format.
//!
//! This crate is pure: no I/O, no async, no clock, and no allocation beyond what `bytes` needs.
//! The broker, the load generator and the integration tests all share it, so a packet is parsed
//! and validated in exactly one place.
//!
//! - [`Decoder`] is a streaming decoder over a [`bytes::BytesMut`] read buffer. It returns
//!   `Ok(None)` while a packet is incomplete, checks the declared size against the configured
//!   maximum *before* the body is buffered, and yields topics and payloads as [`bytes::Bytes`]
//!   slices of the read buffer, never copies.
//! - [`encode`] writes any packet; [`Publish::encode_header`] writes a PUBLISH without its payload
//!   so one payload can be shared by many subscribers in a vectored write.
//! - [`topic`] validates topic names and filters and holds the reference matcher.
//! - Every violation is a [`DecodeError`] that maps to the MQTT 5 reason code a broker must send
//!   ([`DecodeError::reason_code`]).
//!
//! ## Layout
//!
//! - `packet/`: one file per packet type holding its struct, its decoder, its encoder and the
//!   literal-byte tests for 3.1.1 and 5.0; `packet/mod.rs` holds what they share.
//! - `properties.rs`: MQTT 5 properties, where each may appear, and their wire form.
//! - `wire.rs`: integers, variable byte integers, strings and the fixed header.
//! - `decode.rs`: the streaming [`Decoder`], the fixed-header checks and the property-based
//!   tests (round trips, splits, random and mutated input) over `strategy.rs`.
//! - `encode.rs`: [`encode`] and [`encoded_len`].
//! - `reason.rs`, `error.rs`, `bytestr.rs`, `topic.rs`: reason codes, errors, strings, topics.
//!
//! Fuzz targets live in `codec/fuzz/` (cargo-fuzz, outside the workspace); benchmarks in
//! `codec/benches/codec.rs`.
#![warn(missing_docs)]

mod bytestr;
mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reason;
#[cfg(test)]
mod strategy;
#[cfg(test)]
mod test_util;
pub mod topic;
mod wire;

pub use bytestr::ByteStr;
pub use decode::Decoder;
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PacketId, PacketType, Protocol, PubAck,
    PubComp, PubRec, PubRel, Publish, PublishHeader, QoS, RetainHandling, SubAck, Subscribe,
    SubscribeFilter, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use properties::{Properties, PropertyId, PropertyPlace, PropertyValues};
pub use reason::ReasonCode;

/// Default maximum packet size accepted by a [`Decoder`] (1 MiB), the broker's default too.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;
