//! Helpers for the per-packet tests: decode literal bytes (whole, split at every offset, and
//! twice from one buffer) and encode with a length check.

use bytes::BytesMut;

use crate::{encode, encoded_len, DecodeError, Decoder, Packet, PacketId, Protocol};

/// A decoder at `protocol`, or a server-side one waiting for CONNECT.
pub(crate) fn decoder(protocol: Option<Protocol>) -> Decoder {
    match protocol {
        Some(protocol) => Decoder::with_protocol(usize::MAX, protocol),
        None => Decoder::new(usize::MAX),
    }
}

/// Decodes `bytes`, which must hold exactly one packet, and checks that the same packet comes
/// out when the bytes arrive split at every offset and when two copies share one buffer.
pub(crate) fn decode_one(protocol: Option<Protocol>, bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decoder(protocol)
        .decode(&mut buf)
        .unwrap_or_else(|err| panic!("{err:?} decoding {bytes:02x?}"))
        .expect("a whole packet");
    assert!(buf.is_empty(), "bytes left after {packet:?}");
    for split in 0..bytes.len() {
        let mut decoder = decoder(protocol);
        let mut buf = BytesMut::from(&bytes[..split]);
        assert_eq!(decoder.decode(&mut buf), Ok(None), "split at {split}");
        assert_eq!(buf.len(), split, "consumed a partial packet");
        buf.extend_from_slice(&bytes[split..]);
        assert_eq!(decoder.decode(&mut buf).as_ref(), Ok(&Some(packet.clone())));
    }
    let mut twice = BytesMut::from(bytes);
    twice.extend_from_slice(bytes);
    let mut decoder = decoder(protocol);
    assert_eq!(
        decoder.decode(&mut twice).as_ref(),
        Ok(&Some(packet.clone()))
    );
    assert_eq!(
        decoder.decode(&mut twice).as_ref(),
        Ok(&Some(packet.clone()))
    );
    assert_eq!(decoder.decode(&mut twice), Ok(None));
    packet
}

/// Decodes `bytes`, which must fail, and returns the error.
pub(crate) fn decode_err(protocol: Option<Protocol>, bytes: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decoder(protocol).decode(&mut buf) {
        Err(err) => err,
        Ok(result) => panic!("{bytes:02x?} decoded to {result:?}"),
    }
}

/// Encodes `packet` and checks `encoded_len` agrees.
pub(crate) fn encode_bytes(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode(packet, protocol, &mut dst).expect("encodes");
    assert_eq!(encoded_len(packet, protocol), Ok(dst.len()));
    dst.to_vec()
}

/// A packet id from a non-zero literal.
pub(crate) fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero packet id")
}
