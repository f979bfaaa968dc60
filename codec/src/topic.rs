//! Topic names and filters (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7).
//!
//! These checks are shared by the decoder, the broker's trie and the tests. [`matches()`] is the
//! reference matcher: simple and obviously right, so the trie is property-tested against it.

/// Maximum length of a topic in bytes (a UTF-8 string length is a u16) [MQTT-4.7.3-3].
pub const MAX_TOPIC_LEN: usize = 65_535;

/// True if `topic` is a valid topic name for PUBLISH: at least one byte [MQTT-4.7.3-1], no
/// wildcard characters [MQTT-4.7.3-2 / MQTT-3.3.2-2], no U+0000 [MQTT-4.7.3-2].
pub fn valid_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// True if `filter` is a valid topic filter: at least one byte [MQTT-4.7.3-1], `+` only as a
/// whole level [MQTT-4.7.1-3], `#` only as the whole last level [MQTT-4.7.1-2], no U+0000.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "#" if !last => return false,
            "#" | "+" => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// True if `filter` contains a wildcard level.
pub fn has_wildcards(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// True if the topic name `topic` matches the topic filter `filter` (both assumed valid).
///
/// Topics starting with `$` are not matched by filters starting with a wildcard [MQTT-4.7.2-1];
/// `sport/#` also matches `sport` [§4.7.1.2]; levels may be empty.
pub fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("a/b"));
        assert!(valid_name("/"));
        assert!(valid_name("$SYS/x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/+"));
        assert!(!valid_name("a/#"));
        assert!(!valid_name("a\0b"));
    }

    #[test]
    fn filters() {
        for ok in [
            "#", "+", "a/#", "a/+/b", "+/+", "/", "a//b", "+/#", "$SYS/#",
        ] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "a\0"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching() {
        assert!(matches("sport/tennis/player1", "sport/tennis/player1/#"));
        assert!(matches(
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/#"
        ));
        assert!(matches("sport", "sport/#"));
        assert!(matches("sport/tennis/player1", "sport/+/player1"));
        assert!(!matches("sport", "sport/+"));
        assert!(matches("sport/", "sport/+"));
        assert!(matches("/finance", "+/+"));
        assert!(matches("/finance", "/+"));
        assert!(!matches("/finance", "+"));
        assert!(!matches("$SYS/x", "#"));
        assert!(!matches("$SYS/x", "+/x"));
        assert!(matches("$SYS/x", "$SYS/#"));
        assert!(matches("a", "#"));
        assert!(!matches("a/b", "a"));
        assert!(!matches("a", "a/b"));
    }
}
