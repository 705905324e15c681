//! Placeholder until the jsonl decoder lands; replaced by its criterion bench.
fn main() {}
