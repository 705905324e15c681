//! Placeholder until the gt06 decoder lands; replaced by its criterion bench.
fn main() {}
