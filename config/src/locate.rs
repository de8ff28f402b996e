//! Finds the line of a dotted key path in a TOML text, for error messages.

use toml::de::{DeTable, DeValue};

/// 1-based line of `key` (e.g. `monitor.weights.cpu`) in `text`, or `None` when the file does
/// not set that key. When only a parent table is set, its line is returned.
pub(crate) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let root_span = root.span();
    let mut current = DeValue::Table(root.into_inner());
    let mut found_span = None;
    for segment in key.split('.').filter(|s| !s.is_empty()) {
        let next = match segment.parse::<usize>() {
            Ok(index) if current.is_array() => current.get(index),
            _ => current.get(segment),
        };
        match next {
            Some(spanned) => {
                found_span = Some(spanned.span());
                let value = spanned.get_ref().clone();
                current = value;
            }
            None => break,
        }
    }
    found_span
        .filter(|span| span != &root_span)
        .map(|span| line_at(text, span.start))
}

/// 1-based line number of a byte offset.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\n[health]\nbind = \"x\"\n\n[monitor.weights]\ncpu = 1.0\n";

    #[test]
    fn finds_leaf_keys_and_falls_back_to_the_table() {
        assert_eq!(line_of_key(TEXT, "health.bind"), Some(3));
        assert_eq!(line_of_key(TEXT, "monitor.weights.cpu"), Some(6));
        assert_eq!(line_of_key(TEXT, "monitor.interval_secs"), Some(5));
        assert_eq!(line_of_key(TEXT, "log.filter"), None);
    }

    #[test]
    fn line_numbers_count_from_one() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 99), 3);
    }
}
