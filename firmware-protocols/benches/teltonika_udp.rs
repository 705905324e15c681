//! Placeholder until the teltonika_udp decoder lands; replaced by its criterion bench.
fn main() {}
