//! Wire primitives shared by every packet: integers, variable byte integers, length-prefixed
//! strings and binary data (MQTT 3.1.1 §1.5, MQTT 5.0 §1.5), and the fixed header (§2.2).
//!
//! Readers take the frozen frame as `&mut Bytes` and advance it, so strings and binary data come
//! out as zero-copy slices (`Bytes::split_to` bumps a reference count, it never copies). Every
//! reader checks bounds and returns [`DecodeError`]; nothing here panics on network input.
//!
//! Writers assume the caller has already sized the packet (and so checked every limit), which
//! keeps them branch-free apart from the variable byte integer loop.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{ByteStr, DecodeError, EncodeError, PacketId};

/// The largest remaining length a fixed header can carry (four 7-bit digits) [MQTT-2.2.3].
pub(crate) const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The largest UTF-8 string or binary data field (a two-byte length prefix) [MQTT-1.5.3].
pub(crate) const MAX_STRING_LEN: usize = 65_535;

/// A field runs past the end of the packet (or of its property block).
pub(crate) const TRUNCATED: DecodeError = DecodeError::Malformed("packet ends inside a field");

/// The packet has bytes after its last field.
pub(crate) const TRAILING: DecodeError = DecodeError::Malformed("bytes left over after the packet");

/// A variable byte integer inside the packet is longer than 4 bytes or not minimal.
pub(crate) const BAD_VARINT: DecodeError = DecodeError::Malformed("invalid variable byte integer");

/// Parses the variable byte integer at the start of `buf` (MQTT 5.0 §1.5.5, 3.1.1 §2.2.3).
///
/// Returns `Ok(None)` when `buf` ends before the last digit, `Err(())` when the integer is longer
/// than four bytes or not in its shortest form, and otherwise `(bytes used, value)`.
#[inline]
pub(crate) fn peek_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // The encoded value MUST use the minimum number of bytes [MQTT-1.5.5-1]: a trailing
            // zero digit after a continuation means the same value fits in fewer bytes.
            if byte == 0 && i > 0 {
                return Err(());
            }
            return Ok(Some((i + 1, value)));
        }
    }
    // A fifth byte is never allowed [MQTT-1.5.5 / 3.1.1 §2.2.3].
    Err(())
}

/// Reads one byte.
#[inline]
pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    match buf.first() {
        Some(&byte) => {
            buf.advance(1);
            Ok(byte)
        }
        None => Err(TRUNCATED),
    }
}

/// Reads a big-endian two byte integer (MQTT 5.0 §1.5.2).
#[inline]
pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u16())
}

/// Reads a big-endian four byte integer (MQTT 5.0 §1.5.3).
#[inline]
pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u32())
}

/// Reads a variable byte integer inside a packet (property lengths, subscription identifiers).
#[inline]
pub(crate) fn read_varint(buf: &mut Bytes) -> Result<usize, DecodeError> {
    match peek_varint(buf) {
        Ok(Some((used, value))) => {
            buf.advance(used);
            Ok(value)
        }
        Ok(None) => Err(TRUNCATED),
        Err(()) => Err(BAD_VARINT),
    }
}

/// Reads a non-zero packet identifier [MQTT-2.3.1-1].
#[inline]
pub(crate) fn read_packet_id(buf: &mut Bytes) -> Result<PacketId, DecodeError> {
    PacketId::new(read_u16(buf)?).ok_or(DecodeError::ZeroPacketId)
}

/// Reads binary data: a two byte length and that many bytes, as a slice of the frame.
#[inline]
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(buf)?);
    if buf.len() < len {
        return Err(TRUNCATED);
    }
    Ok(buf.split_to(len))
}

/// Reads a UTF-8 encoded string, checked per [`check_utf8`].
#[inline]
pub(crate) fn read_string(buf: &mut Bytes) -> Result<ByteStr, DecodeError> {
    let bytes = read_binary(buf)?;
    check_utf8(&bytes)?;
    // SAFETY: `check_utf8` just verified the bytes are UTF-8.
    Ok(unsafe { ByteStr::from_utf8_unchecked(bytes) })
}

/// Checks an MQTT UTF-8 string: well-formed UTF-8, which excludes surrogates [MQTT-1.5.3-1]
/// (MQTT 5.0 [MQTT-1.5.4-1]), and no U+0000 [MQTT-1.5.3-2] (MQTT 5.0 [MQTT-1.5.4-2]).
#[inline]
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.contains(&0) || std::str::from_utf8(bytes).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(())
}

/// Fails with [`TRAILING`] unless the whole body was consumed.
#[inline]
pub(crate) fn finish(buf: &Bytes) -> Result<(), DecodeError> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(TRAILING)
    }
}

/// The number of bytes `value` takes as a variable byte integer (`value` ≤ 268,435,455).
#[inline]
pub(crate) const fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` (≤ 268,435,455) as a variable byte integer.
#[inline]
pub(crate) fn put_varint(dst: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// The encoded size of a string or binary field (length prefix included).
#[inline]
pub(crate) fn string_len(bytes: &[u8]) -> Result<usize, EncodeError> {
    if bytes.len() > MAX_STRING_LEN {
        return Err(EncodeError::TooLarge);
    }
    Ok(2 + bytes.len())
}

/// Writes a string or binary field whose size [`string_len`] accepted.
#[inline]
pub(crate) fn put_string(dst: &mut BytesMut, bytes: &[u8]) {
    dst.put_u16(bytes.len() as u16);
    dst.put_slice(bytes);
}

/// The size of a whole packet with `remaining` bytes after its fixed header, or `TooLarge` when
/// the remaining length cannot be encoded.
#[inline]
pub(crate) fn packet_len(remaining: usize) -> Result<usize, EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLarge);
    }
    Ok(1 + varint_len(remaining) + remaining)
}

/// Reserves room for a whole packet and writes its fixed header (MQTT 5.0 §2.1.1).
#[inline]
pub(crate) fn put_fixed_header(
    dst: &mut BytesMut,
    first: u8,
    remaining: usize,
) -> Result<(), EncodeError> {
    let total = packet_len(remaining)?;
    dst.reserve(total);
    dst.put_u8(first);
    put_varint(dst, remaining);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for (bytes, value) in [
            (&[0x00][..], 0),
            (&[0x7F][..], 127),
            (&[0x80, 0x01][..], 128),
            (&[0xFF, 0x7F][..], 16_383),
            (&[0x80, 0x80, 0x01][..], 16_384),
            (&[0xFF, 0xFF, 0x7F][..], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01][..], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F][..], MAX_REMAINING_LENGTH),
        ] {
            assert_eq!(peek_varint(bytes), Ok(Some((bytes.len(), value))));
            assert_eq!(varint_len(value), bytes.len());
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(&out[..], bytes);
        }
        assert_eq!(peek_varint(&[]), Ok(None));
        assert_eq!(peek_varint(&[0x80]), Ok(None));
        assert_eq!(peek_varint(&[0xFF, 0xFF, 0xFF]), Ok(None));
        assert_eq!(peek_varint(&[0xFF, 0xFF, 0xFF, 0xFF]), Err(()));
        assert_eq!(peek_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Err(()));
        // Not minimal [MQTT-1.5.5-1].
        assert_eq!(peek_varint(&[0x80, 0x00]), Err(()));
        assert_eq!(peek_varint(&[0xFF, 0x80, 0x00]), Err(()));
    }

    #[test]
    fn strings() {
        let mut buf = Bytes::from_static(b"\x00\x03a/b\x00\x00rest");
        assert_eq!(read_string(&mut buf).unwrap(), "a/b");
        assert_eq!(read_string(&mut buf).unwrap(), "");
        assert_eq!(&buf[..], b"rest");
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00\x05ab")),
            Err(TRUNCATED)
        );
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00")),
            Err(TRUNCATED)
        );
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00\x01\x00")),
            Err(DecodeError::InvalidUtf8)
        );
        // An encoded surrogate (U+D800) is ill-formed UTF-8.
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00\x03\xED\xA0\x80")),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            read_string(&mut Bytes::from_static(b"\x00\x01\xFF")),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(string_len(&[0; MAX_STRING_LEN]), Ok(MAX_STRING_LEN + 2));
        assert_eq!(
            string_len(&[0; MAX_STRING_LEN + 1]),
            Err(EncodeError::TooLarge)
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(packet_len(0), Ok(2));
        assert_eq!(
            packet_len(MAX_REMAINING_LENGTH),
            Ok(MAX_REMAINING_LENGTH + 5)
        );
        assert_eq!(
            packet_len(MAX_REMAINING_LENGTH + 1),
            Err(EncodeError::TooLarge)
        );
        assert_eq!(
            read_packet_id(&mut Bytes::from_static(b"\x00\x00")),
            Err(DecodeError::ZeroPacketId)
        );
    }
}
