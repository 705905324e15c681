//! Arbitrary bytes into the teltonika-udp decoder, driven as the gateway drives it.
//!
//! Run: `cd firmware-protocols/fuzz && cargo +nightly fuzz run teltonika_udp`

#![no_main]

mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::drive("teltonika-udp", data));
