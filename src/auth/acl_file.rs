//! The `acl_file`, in Mosquitto's format, parsed into [`AclRules`].
//!
//! ```text
//! # comment
//! topic read public/#            <- before any `user` line: anonymous clients
//! user t1.qq.com                 <- the `topic` lines after it are this user's
//! topic write /%F/chat
//! pattern read /%u/chat          <- `pattern` lines apply to everyone, wherever they stand
//! pattern deny secret/%c
//! ```
//!
//! A `topic` / `pattern` line is the keyword, an optional access word (`read`, `write`,
//! `readwrite`, `deny`; `readwrite` when omitted) and the filter: the rest of the line, so a
//! filter may contain spaces. Filters may use `+`, `#` and the substitutions `%u`, `%c`, `%f`,
//! `%F` as whole levels; what they mean is documented in [`crate::access`]. A `user` line
//! names the user (rest of the line). Words are separated by spaces or tabs.
//!
//! One departure from Mosquitto: there `topic deny` (an access word and no filter) is a rule on
//! the topic `deny`; here it is an error, since it is almost surely a forgotten filter.

use std::path::Path;

use shardmq_shard::acl::Access;

use crate::access::{AclRule, AclRules, FilterTemplate};

use super::{content_lines, first_word, read_text, FileError, FileErrorKind};

/// Reads and parses the ACL file at `path`.
pub fn load_acl_file(path: &Path) -> Result<AclRules, FileError> {
    parse_acl(&read_text(path)?, path)
}

/// Parses ACL file text; `path` names the file in errors.
pub fn parse_acl(text: &str, path: &Path) -> Result<AclRules, FileError> {
    let mut rules = AclRules::new();
    let mut user: Option<&str> = None;
    for (number, line) in content_lines(text) {
        let at = |kind| FileError::at(path, number, kind);
        let (keyword, rest) = first_word(line);
        match keyword {
            "topic" | "pattern" => {
                let rule = parse_rule(keyword, rest).map_err(at)?;
                match (keyword, user) {
                    ("pattern", _) => rules.push_pattern(rule),
                    (_, None) => rules.push_anonymous(rule),
                    (_, Some(name)) => rules.push_user(name, rule),
                }
            }
            "user" => {
                if rest.is_empty() {
                    return Err(at(FileErrorKind::MissingUsername));
                }
                user = Some(rest);
            }
            other => return Err(at(FileErrorKind::UnknownKeyword(other.to_string()))),
        }
    }
    Ok(rules)
}

/// Parses what follows `topic` / `pattern`: `[access] <filter>`.
fn parse_rule(keyword: &str, rest: &str) -> Result<AclRule, FileErrorKind> {
    let (first, remainder) = first_word(rest);
    let (access, filter) = if remainder.is_empty() {
        if first.is_empty() || parse_access(first).is_some() {
            return Err(FileErrorKind::MissingFilter(
                format!("{keyword} {first}").trim_end().to_string(),
            ));
        }
        (Access::ReadWrite, first)
    } else {
        let access =
            parse_access(first).ok_or_else(|| FileErrorKind::UnknownAccess(first.to_string()))?;
        (access, remainder)
    };
    let template =
        FilterTemplate::parse(filter).map_err(|reason| FileErrorKind::InvalidFilter {
            filter: filter.to_string(),
            reason,
        })?;
    Ok(AclRule::new(access, template))
}

/// The access of an access word: `read`, `write`, `readwrite` or `deny`.
fn parse_access(word: &str) -> Option<Access> {
    match word {
        "read" => Some(Access::Read),
        "write" => Some(Access::Write),
        "readwrite" => Some(Access::ReadWrite),
        "deny" => Some(Access::Deny),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AclRules, FileError> {
        parse_acl(text, Path::new("/etc/shardmq/acl"))
    }

    fn rule(access: Access, filter: &str) -> AclRule {
        AclRule::new(access, FilterTemplate::parse(filter).expect("valid filter"))
    }

    #[test]
    fn parses_every_line_kind() {
        let text = "\
# anonymous
topic read public/#
topic weather/today

user t1.qq.com
topic write /%F/chat
\ttopic   deny   secret/x   \r
pattern read /%u/chat
user x.sina.com
topic readwrite x y/with space
pattern deny secret/%c
";
        let rules = parse(text).expect("valid");
        assert_eq!(
            rules.anonymous(),
            [
                rule(Access::Read, "public/#"),
                rule(Access::ReadWrite, "weather/today")
            ]
        );
        assert_eq!(
            rules.user("t1.qq.com"),
            [
                rule(Access::Write, "/%F/chat"),
                rule(Access::Deny, "secret/x")
            ]
        );
        assert_eq!(
            rules.user("x.sina.com"),
            [rule(Access::ReadWrite, "x y/with space")]
        );
        assert_eq!(
            rules.patterns(),
            [
                rule(Access::Read, "/%u/chat"),
                rule(Access::Deny, "secret/%c")
            ]
        );
        assert!(rules.user("nobody").is_empty());
    }

    #[test]
    fn parsed_rules_drive_the_matcher() {
        let text = "pattern read /%u/chat\npattern write /%F/chat\n";
        let rules = parse(text).expect("valid");
        let acl = rules.compile(Some("t1.qq.com"), "c", &["yxq"], &["yxq"]);
        assert!(acl.can_publish("/yxq/chat") && acl.can_receive("/t1.qq.com/chat"));
        assert!(!acl.can_publish("/other/chat"));
    }

    #[test]
    fn empty_file_is_no_rules() {
        assert_eq!(
            parse("\n# only comments\n\n").expect("valid"),
            AclRules::new()
        );
    }

    #[test]
    fn errors_name_file_line_and_token() {
        let cases = [
            ("topic read a\ntopix read b\n", 2, "unknown keyword `topix`"),
            ("\n\ntopic rw a/b\n", 3, "unknown access `rw`"),
            ("topic\n", 1, "`topic` needs a topic filter"),
            ("pattern deny\n", 1, "`pattern deny` needs a topic filter"),
            ("user\n", 1, "`user` needs a username"),
            (
                "topic read a/#/b\n",
                1,
                "invalid topic filter `a/#/b`: invalid topic filter",
            ),
            (
                "pattern write %f/%F\n",
                1,
                "invalid topic filter `%f/%F`: more than one %f/%F substitution",
            ),
        ];
        for (text, line, message) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.line, Some(line), "{text:?}");
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("/etc/shardmq/acl:{line}: {message}")),
                "{shown}"
            );
        }
    }

    #[test]
    fn load_reads_the_file() {
        let file = crate::auth::temp_file("user a\ntopic a/#\n");
        let rules = load_acl_file(file.path()).expect("loads");
        assert_eq!(rules.user("a"), [rule(Access::ReadWrite, "a/#")]);
    }
}
