//! Arbitrary bytes into the wialon decoder, driven as the gateway drives it.
//!
//! Run: `cd firmware-protocols/fuzz && cargo +nightly fuzz run wialon`

#![no_main]

mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::drive("wialon", data));
