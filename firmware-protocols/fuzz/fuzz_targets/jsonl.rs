//! Arbitrary bytes into the jsonl decoder, driven as the gateway drives it.
//!
//! Run: `cd firmware-protocols/fuzz && cargo +nightly fuzz run jsonl`

#![no_main]

mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::drive("jsonl", data));
