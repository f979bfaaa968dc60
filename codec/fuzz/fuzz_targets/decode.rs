//! Whole-buffer decode at every level: never panics, and every decoded packet round-trips.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = common::decoder(selector);
    let mut buf = BytesMut::from(stream);
    common::drain(&mut decoder, &mut buf, &mut Vec::new());
});
