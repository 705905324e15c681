//! Placeholder until the queclink decoder lands; replaced by its criterion bench.
fn main() {}
