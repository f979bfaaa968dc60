//! Encoder for every packet at every protocol level.

use bytes::BytesMut;

use crate::{EncodeError, Packet, Protocol, Publish};

/// Appends `packet`, encoded for `protocol`, to `dst`.
pub fn encode(packet: &Packet, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let _ = (packet, protocol, dst);
    todo!("encoder")
}

/// The size in bytes of `packet` encoded for `protocol` (fixed header included).
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> Result<usize, EncodeError> {
    let _ = (packet, protocol);
    todo!("encoded_len")
}

impl Publish {
    /// Appends the fixed and variable header of this PUBLISH for `protocol` to `dst`, sized for
    /// `self.payload`, without the payload itself: a writer sends the header and then the shared
    /// payload `Bytes` in one vectored write.
    pub fn encode_header(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let _ = (protocol, dst);
        todo!("publish header")
    }
}
