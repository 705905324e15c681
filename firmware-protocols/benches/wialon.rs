//! Placeholder until the wialon decoder lands; replaced by its criterion bench.
fn main() {}
