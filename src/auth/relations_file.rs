//! The `relations_file`: who follows whom, for the `%f` / `%F` substitutions.
//!
//! ```text
//! # <user> <followee> [<followee> ...]
//! t1.qq.com yxq_anis.163.com
//! yxq_anis.163.com t1.qq.com x.sina.com
//! ```
//!
//! One line per user (a user may also be spread over several lines; they add up), names
//! separated by spaces or tabs, so a name cannot contain blanks. Following is one-way; two users
//! who follow each other are friends (`%F`). A line with a user and no followee is allowed and
//! adds nothing. Names with `+`, `#` or `/` are kept but never fill an allowing rule (see
//! [`crate::access`]).

use std::path::Path;

use crate::access::Relations;

use super::{content_lines, read_text, FileError};

/// Reads and parses the relations file at `path`.
pub fn load_relations_file(path: &Path) -> Result<Relations, FileError> {
    Ok(parse_relations(&read_text(path)?))
}

/// Parses relations file text. Every non-comment line is valid, so this cannot fail.
pub fn parse_relations(text: &str) -> Relations {
    let mut relations = Relations::new();
    for (_, line) in content_lines(text) {
        let mut names = line.split_whitespace();
        let Some(user) = names.next() else {
            continue;
        };
        for followee in names {
            relations.add_follow(user, followee);
        }
    }
    relations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_and_friends() {
        let text = "\
# the push-server example
t1.qq.com yxq_anis.163.com
yxq_anis.163.com\tt1.qq.com   x.sina.com
x.sina.com yxq_anis.163.com
x.sina.com t1.qq.com
loner
";
        let relations = parse_relations(text);
        assert_eq!(relations.follows("t1.qq.com"), ["yxq_anis.163.com"]);
        assert_eq!(relations.friends("t1.qq.com"), ["yxq_anis.163.com"]);
        assert_eq!(
            relations.friends("yxq_anis.163.com"),
            ["t1.qq.com", "x.sina.com"]
        );
        assert_eq!(
            relations.follows("x.sina.com"),
            ["t1.qq.com", "yxq_anis.163.com"]
        );
        assert_eq!(relations.friends("x.sina.com"), ["yxq_anis.163.com"]);
        assert!(relations.follows("loner").is_empty());
        assert!(relations.friends("nobody").is_empty());
    }

    #[test]
    fn load_reads_the_file() {
        let file = crate::auth::temp_file("a b\nb a\n");
        let path = file.path().to_path_buf();
        let relations = load_relations_file(&path).expect("loads");
        assert_eq!(relations.friends("a"), ["b"]);
        drop(file);
        let err = load_relations_file(&path).expect_err("gone");
        assert_eq!(err.line, None);
    }
}
