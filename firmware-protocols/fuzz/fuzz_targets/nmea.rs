//! Arbitrary bytes into the nmea decoder, driven as the gateway drives it.
//!
//! Run: `cd firmware-protocols/fuzz && cargo +nightly fuzz run nmea`

#![no_main]

mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::drive("nmea", data));
