//! Placeholder until the nmea decoder lands; replaced by its criterion bench.
fn main() {}
