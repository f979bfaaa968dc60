//! The `auto_subscribe_file`: subscriptions made for a client when it connects.
//!
//! ```text
//! # <filter-template> <qos>        <- before any `user` line: every client
//! notices/all 0
//! /%u/chat 1
//! user/%F/presence/+ 0
//! user t1.qq.com                   <- the lines after it are this user's own
//! ops/alerts 2
//! ```
//!
//! Same shape as the ACL file: the QoS is the last word of the line and the filter is everything
//! before it, so a filter may contain spaces. Filters use the same substitutions as ACL rules
//! (see [`crate::access`]); [`AutoSubscribe::expand`] turns them into concrete filters, and
//! the broker subscribes those the session's ACL allows.

use std::path::Path;

use shardmq_codec::QoS;

use crate::access::{AutoSubscribe, AutoSubscription, FilterTemplate};

use super::{content_lines, first_word, read_text, FileError, FileErrorKind};

/// Reads and parses the auto-subscribe file at `path`.
pub fn load_auto_subscribe_file(path: &Path) -> Result<AutoSubscribe, FileError> {
    parse_auto_subscribe(&read_text(path)?, path)
}

/// Parses auto-subscribe file text; `path` names the file in errors.
pub fn parse_auto_subscribe(text: &str, path: &Path) -> Result<AutoSubscribe, FileError> {
    let mut table = AutoSubscribe::new();
    let mut user: Option<&str> = None;
    for (number, line) in content_lines(text) {
        let at = |kind| FileError::at(path, number, kind);
        let (word, rest) = first_word(line);
        if word == "user" {
            if rest.is_empty() {
                return Err(at(FileErrorKind::MissingUsername));
            }
            user = Some(rest);
            continue;
        }
        let subscription = parse_line(line).map_err(at)?;
        match user {
            None => table.push_everyone(subscription),
            Some(name) => table.push_user(name, subscription),
        }
    }
    Ok(table)
}

/// Parses `<filter-template> <qos>`.
fn parse_line(line: &str) -> Result<AutoSubscription, FileErrorKind> {
    let (filter, qos) = line
        .rsplit_once(char::is_whitespace)
        .ok_or_else(|| FileErrorKind::MissingQos(line.to_string()))?;
    let filter = filter.trim_end();
    let qos = qos
        .parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| FileErrorKind::InvalidQos(qos.to_string()))?;
    let template =
        FilterTemplate::parse(filter).map_err(|reason| FileErrorKind::InvalidFilter {
            filter: filter.to_string(),
            reason,
        })?;
    Ok(AutoSubscription::new(template, qos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AutoSubscribe, FileError> {
        parse_auto_subscribe(text, Path::new("/etc/shardmq/auto"))
    }

    #[test]
    fn parses_everyone_and_user_lines() {
        let text = "\
# everyone
notices/all 0
/%u/chat\t1
user/%F/presence/+   0

user t1.qq.com
ops/alerts 2
rooms/with space 1
";
        let table = parse(text).expect("valid");
        let line = |filter: &str, qos| {
            AutoSubscription::new(FilterTemplate::parse(filter).expect("valid filter"), qos)
        };
        assert_eq!(
            table.everyone(),
            [
                line("notices/all", QoS::AtMostOnce),
                line("/%u/chat", QoS::AtLeastOnce),
                line("user/%F/presence/+", QoS::AtMostOnce),
            ]
        );
        assert_eq!(
            table.user("t1.qq.com"),
            [
                line("ops/alerts", QoS::ExactlyOnce),
                line("rooms/with space", QoS::AtLeastOnce)
            ]
        );
        let expanded = table.expand(Some("t1.qq.com"), "c", &[], &["yxq"]);
        let filters: Vec<_> = expanded.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            filters,
            [
                "notices/all",
                "/t1.qq.com/chat",
                "user/yxq/presence/+",
                "ops/alerts",
                "rooms/with space"
            ]
        );
    }

    #[test]
    fn errors_name_file_line_and_token() {
        let cases = [
            ("a/b 0\na/b 3\n", 2, "invalid QoS `3`"),
            ("a/b one\n", 1, "invalid QoS `one`"),
            ("\na/b\n", 2, "`a/b` needs a QoS"),
            ("user\n", 1, "`user` needs a username"),
            ("a/#/b 1\n", 1, "invalid topic filter `a/#/b`"),
        ];
        for (text, line, message) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.line, Some(line), "{text:?}");
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("/etc/shardmq/auto:{line}: {message}")),
                "{shown}"
            );
        }
    }

    #[test]
    fn load_reads_the_file() {
        let file = crate::auth::temp_file("a/%c 1\n");
        let table = load_auto_subscribe_file(file.path()).expect("loads");
        assert_eq!(
            table.expand(None, "dev1", &[], &[]),
            [("a/dev1".to_string(), QoS::AtLeastOnce)]
        );
    }
}
