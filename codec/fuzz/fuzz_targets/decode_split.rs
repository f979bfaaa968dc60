//! The input fed in two parts gives the same packets and errors as fed whole.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let [selector, split_high, split_low, stream @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_be_bytes([*split_high, *split_low])) % (stream.len() + 1);

    let mut whole = Vec::new();
    common::drain(
        &mut common::decoder(*selector),
        &mut BytesMut::from(stream),
        &mut whole,
    );

    let mut parts = Vec::new();
    let mut decoder = common::decoder(*selector);
    let mut buf = BytesMut::from(&stream[..split]);
    if common::drain(&mut decoder, &mut buf, &mut parts) {
        buf.extend_from_slice(&stream[split..]);
        common::drain(&mut decoder, &mut buf, &mut parts);
    }
    assert_eq!(whole, parts);
});
