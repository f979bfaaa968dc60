//! Shared by the fuzz targets: the level a decoder starts at, picked by the first input byte,
//! and the decode loop with its round-trip check.

use bytes::BytesMut;
use shardmq_codec::{encode, DecodeError, Decoder, Packet, Protocol};

/// A decoder picked by `selector`: server side waiting for CONNECT, or at a known level, with
/// the default or a small maximum packet size.
pub fn decoder(selector: u8) -> Decoder {
    let max = if selector & 0x80 != 0 {
        64
    } else {
        shardmq_codec::DEFAULT_MAX_PACKET_SIZE
    };
    match selector & 0b11 {
        0 => Decoder::new(max),
        1 => Decoder::with_protocol(max, Protocol::V310),
        2 => Decoder::with_protocol(max, Protocol::V311),
        _ => Decoder::with_protocol(max, Protocol::V500),
    }
}

/// What one `decode` call gave (incomplete is the end of a drain).
pub type Outcome = Result<Packet, DecodeError>;

/// Decodes packets from `buf` until it is incomplete or an error, appending each outcome.
/// Returns false after an error (the connection would be closed).
pub fn drain(decoder: &mut Decoder, buf: &mut BytesMut, out: &mut Vec<Outcome>) -> bool {
    loop {
        let level = decoder.protocol();
        match decoder.decode(buf) {
            Ok(Some(packet)) => {
                check_round_trip(&packet, level);
                out.push(Ok(packet));
            }
            Ok(None) => return true,
            Err(err) => {
                let _ = err.reason_code();
                out.push(Err(err));
                return false;
            }
        }
    }
}

/// A decoded packet encodes, at the level it was decoded at, to bytes that decode to itself.
fn check_round_trip(packet: &Packet, level: Option<Protocol>) {
    let (protocol, mut decoder) = match packet {
        Packet::Connect(connect) => (connect.protocol, Decoder::new(usize::MAX)),
        _ => {
            let protocol = level.expect("only CONNECT decodes before the level is known");
            (protocol, Decoder::with_protocol(usize::MAX, protocol))
        }
    };
    let mut bytes = BytesMut::new();
    encode(packet, protocol, &mut bytes).expect("a decoded packet encodes");
    let len = shardmq_codec::encoded_len(packet, protocol).expect("a decoded packet has a length");
    assert_eq!(len, bytes.len());
    let again = decoder
        .decode(&mut bytes)
        .expect("a re-encoded packet decodes");
    assert_eq!(again.as_ref(), Some(packet));
    assert!(bytes.is_empty());
}
