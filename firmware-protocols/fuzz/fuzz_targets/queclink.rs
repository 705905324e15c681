//! Arbitrary bytes into the queclink decoder, driven as the gateway drives it.
//!
//! Run: `cd firmware-protocols/fuzz && cargo +nightly fuzz run queclink`

#![no_main]

mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::drive("queclink", data));
