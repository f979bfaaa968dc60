//! Credentials and the access files: what the control core's file backend reads, what the Redis
//! backend parses its lists with, and what `shardmq passwd` and `shardmq import` check.
//!
//! - [`password`]: the salted hash formats of Mosquitto password files, checked in constant time.
//! - [`password_file`]: loads a `password_file` (`user:hash` lines) into a map the control core
//!   checks CONNECT credentials against.
//! - [`acl_file`], [`relations_file`], [`auto_subscribe_file`]: parse the `acl_file`, the
//!   `%f`/`%F` follow relations and the auto-subscribe table into the rule model of
//!   [`crate::access`], which the control core expands into each session's matcher.
//!
//! Everything here runs on the control core or in the CLI, never on a shard, so it may block on
//! the file system. A bad file is an operator error: loading stops at the first bad line and the
//! [`FileError`] names the file, the line and the offending text, rather than dropping the line
//! and starting with fewer users or rules than the operator wrote.

pub mod acl_file;
pub mod auto_subscribe_file;
pub mod password;
pub mod password_file;
pub mod relations_file;

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest user name, in bytes, that may log in; a CONNECT with a longer one is refused as bad
/// credentials before any lookup, so that no table or backend query is keyed by kilobytes an
/// attacker chose (MQTT allows 65,535). `shardmq passwd` and `shardmq users` refuse longer
/// names too.
pub const MAX_USERNAME_LEN: usize = 256;

/// A configuration file that could not be read or parsed, with where and why.
#[derive(Debug)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number; `None` when the file as a whole failed (I/O).
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: FileErrorKind,
}

/// The display already includes every inner error's message, so no `source` chain repeats it.
impl std::error::Error for FileError {}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.kind),
            None => write!(f, "{}: {}", self.path.display(), self.kind),
        }
    }
}

/// What is wrong in a [`FileError`]. Each variant quotes the offending token, and its display
/// includes any inner error (no `source` chain, so reports do not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum FileErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    /// The file is not UTF-8.
    #[error("not valid UTF-8")]
    Utf8,
    /// A line starts with a word that is not a keyword of this file.
    #[error("unknown keyword `{0}`")]
    UnknownKeyword(String),
    /// The access word of a `topic`/`pattern` line is not read, write, readwrite or deny.
    #[error("unknown access `{0}` (expected read, write, readwrite or deny)")]
    UnknownAccess(String),
    /// A `topic`/`pattern` line has no filter.
    #[error("`{0}` needs a topic filter")]
    MissingFilter(String),
    /// A topic filter template is invalid.
    #[error("invalid topic filter `{filter}`: {reason}")]
    InvalidFilter {
        /// The filter as written.
        filter: String,
        /// Why.
        reason: crate::access::TemplateError,
    },
    /// A `user` line has no name.
    #[error("`user` needs a username")]
    MissingUsername,
    /// An auto-subscribe line has a QoS other than 0, 1 or 2.
    #[error("invalid QoS `{0}` (expected 0, 1 or 2 after the filter)")]
    InvalidQos(String),
    /// An auto-subscribe line has no QoS after its filter.
    #[error("`{0}` needs a QoS (0, 1 or 2) after the filter")]
    MissingQos(String),
    /// A password file line has no `:`.
    #[error("expected `user:hash`, found `{0}`")]
    MissingColon(String),
    /// A password file line has an empty username.
    #[error("empty username")]
    EmptyUsername,
    /// A user's password hash is invalid.
    #[error("password hash of user `{user}`: {reason}")]
    Hash {
        /// The user.
        user: String,
        /// Why.
        reason: crate::auth::password::HashParseError,
    },
    /// A user appears twice in a password file.
    #[error("user `{user}` already defined on line {first_line}")]
    DuplicateUser {
        /// The user.
        user: String,
        /// Where it was first defined.
        first_line: usize,
    },
}

impl FileError {
    /// An error at `line` of `path`.
    pub(crate) fn at(path: &Path, line: usize, kind: FileErrorKind) -> FileError {
        FileError {
            path: path.to_path_buf(),
            line: Some(line),
            kind,
        }
    }
}

/// Reads a whole configuration file as UTF-8; a decoding error names its line.
fn read_text(path: &Path) -> Result<String, FileError> {
    let bytes = std::fs::read(path).map_err(|err| FileError {
        path: path.to_path_buf(),
        line: None,
        kind: FileErrorKind::Io(err),
    })?;
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        FileError::at(path, line, FileErrorKind::Utf8)
    })
}

/// The lines of `text` that carry content, each with its 1-based number, trimmed: blank lines
/// and lines whose first non-blank character is `#` are skipped.
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Splits off the first whitespace-separated word of a trimmed line: `(word, rest trimmed)`.
pub(crate) fn first_word(line: &str) -> (&str, &str) {
    match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (line, ""),
    }
}

/// A real temporary file holding `contents`, removed when dropped: for the loaders' tests.
#[cfg(test)]
pub(crate) fn temp_file(contents: impl AsRef<[u8]>) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    std::io::Write::write_all(&mut file, contents.as_ref()).expect("write");
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_skip_blanks_and_comments() {
        let text = "a\n\n  # c\n\tb x \r\n#d\n";
        let lines: Vec<_> = content_lines(text).collect();
        assert_eq!(lines, [(1, "a"), (4, "b x")]);
    }

    #[test]
    fn first_word_splits_on_any_blank() {
        assert_eq!(first_word("topic  read a b"), ("topic", "read a b"));
        assert_eq!(first_word("user\tbob"), ("user", "bob"));
        assert_eq!(first_word("user"), ("user", ""));
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = FileError::at(
            Path::new("/etc/acl"),
            7,
            FileErrorKind::UnknownKeyword("topix".into()),
        );
        assert_eq!(err.to_string(), "/etc/acl:7: unknown keyword `topix`");
    }

    #[test]
    fn read_text_reports_bad_utf8_line_and_missing_files() {
        let file = temp_file(b"ok\nok\nbad \xff\n");
        let err = read_text(file.path()).expect_err("not utf-8");
        assert_eq!(err.line, Some(3));
        assert!(matches!(err.kind, FileErrorKind::Utf8));
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = read_text(&dir.path().join("missing")).expect_err("missing");
        assert_eq!(missing.line, None);
        assert!(
            missing.to_string().contains("missing: cannot read"),
            "{missing}"
        );
    }
}
