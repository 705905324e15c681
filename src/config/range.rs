//! The problem list every section's check writes to, with the range checks they share, so
//! a bound reads the same in every key's message: `<key>: <value> must be between <lo> and
//! <hi>`, `<key>: <value> is below the minimum of <min>`.

use std::fmt::Display;
use std::ops::RangeInclusive;

/// Problems found so far, each a line `<key>: <why>`.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    /// `key` is wrong because of `why`.
    pub fn add(&mut self, key: &str, why: impl Display) {
        self.0.push(format!("{key}: {why}"));
    }

    /// A problem already worded with its key (from a section kept in its own module).
    pub fn extend(&mut self, problems: impl IntoIterator<Item = String>) {
        self.0.extend(problems);
    }

    /// `key`'s `value` must lie in `range`.
    pub fn between<T: PartialOrd + Display>(
        &mut self,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
    ) {
        if !range.contains(&value) {
            self.add(
                key,
                format_args!(
                    "{value} must be between {} and {}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }

    /// `key`'s `value` must be at least `min`; `unit` follows the minimum (e.g. ` (1 MiB)`).
    pub fn at_least<T: PartialOrd + Display>(&mut self, key: &str, value: T, min: T, unit: &str) {
        if value < min {
            self.add(
                key,
                format_args!("{value} is below the minimum of {min}{unit}"),
            );
        }
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_named_with_the_value() {
        let mut p = Problems::default();
        p.between("a.b", 1, 1..=3);
        p.between("a.b", 3, 1..=3);
        p.at_least("a.c", 256u64, 256, "");
        assert!(p.0.is_empty(), "{:?}", p.0);
        p.between("a.b", 4, 1..=3);
        p.at_least("a.c", 5u64, 1_048_576, " (1 MiB)");
        assert_eq!(
            p.into_vec(),
            [
                "a.b: 4 must be between 1 and 3",
                "a.c: 5 is below the minimum of 1048576 (1 MiB)",
            ]
        );
    }
}
