//! Streaming decoder: check-then-parse over a `BytesMut` read buffer.
//!
//! `Decoder::decode` first reads the fixed header without consuming anything; if the declared
//! packet is larger than the maximum it fails at once (before the body is buffered), if it is not
//! all there yet it returns `Ok(None)`, and otherwise it splits the whole frame off the buffer,
//! freezes it and parses it, so topics and payloads are slices of the frame.

use bytes::BytesMut;

use crate::{DecodeError, Packet, Protocol};

/// A streaming MQTT decoder for one connection.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_packet_size: usize,
    protocol: Option<Protocol>,
}

impl Decoder {
    /// A decoder that accepts packets up to `max_packet_size` bytes (fixed header included) and
    /// expects CONNECT first (server side).
    pub fn new(max_packet_size: usize) -> Self {
        Self { max_packet_size, protocol: None }
    }

    /// A decoder for a connection whose level is already known (client side, or after CONNECT).
    pub fn with_protocol(max_packet_size: usize, protocol: Protocol) -> Self {
        Self { max_packet_size, protocol: Some(protocol) }
    }

    /// Tells the decoder the level CONNECT negotiated; later packets are parsed for it.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = Some(protocol);
    }

    /// The negotiated level, if known.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// The maximum packet size.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the maximum packet size.
    pub fn set_max_packet_size(&mut self, max: usize) {
        self.max_packet_size = max;
    }

    /// Decodes the next packet from the front of `buf`.
    ///
    /// Returns `Ok(None)` (consuming nothing) while the packet is incomplete. Before the level is
    /// known only CONNECT decodes (anything else is [`DecodeError::NotConnect`]); a decoded
    /// CONNECT sets the level.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let _ = buf;
        todo!("decoder")
    }
}
