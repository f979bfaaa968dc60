//! The `password_file`: one `user:hash` line per user, as written by `mosquitto_passwd` and
//! `shardmq passwd`.
//!
//! Blank lines and lines starting with `#` are skipped; blanks around the user and the hash are
//! trimmed (as Mosquitto does). Unlike Mosquitto, which logs a bad entry and drops it, loading
//! fails on the first bad line, a plain-text password or a user defined twice, naming the line:
//! a broker silently started without some users is harder to debug than one that refuses to
//! start.
//!
//! Checking a password runs PBKDF2 or Argon2 (see [`crate::auth::password`]) on the control
//! core. An unknown user costs the same work against a dummy hash shaped like the file's most
//! common kind of entry (same scheme and parameters), so the answer time does not tell which
//! usernames exist, whatever the operator chose to hash with. A user whose hash asks for more
//! work than the limits allow cannot log in: each attempt is refused unverified and logged with
//! the user's name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::password::PasswordHash;
use super::{content_lines, read_text, FileError, FileErrorKind};

/// The users of a password file and their hashes.
#[derive(Clone, Debug)]
pub struct PasswordFile {
    path: PathBuf,
    users: HashMap<String, PasswordHash>,
    /// Checked for unknown users; see [`typical_dummy`].
    dummy: PasswordHash,
}

impl PasswordFile {
    /// Reads and parses the password file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, FileError> {
        PasswordFile::parse(&read_text(path)?, path)
    }

    /// Parses password file text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, FileError> {
        let mut users = HashMap::new();
        let mut defined_on: HashMap<String, usize> = HashMap::new();
        for (number, line) in content_lines(text) {
            let (user, hash) =
                parse_entry(line).map_err(|kind| FileError::at(path, number, kind))?;
            if let Some(&first_line) = defined_on.get(user) {
                return Err(FileError::at(
                    path,
                    number,
                    FileErrorKind::DuplicateUser {
                        user: user.to_string(),
                        first_line,
                    },
                ));
            }
            defined_on.insert(user.to_string(), number);
            users.insert(user.to_string(), hash);
        }
        let dummy = typical_dummy(users.values());
        Ok(PasswordFile {
            path: path.to_path_buf(),
            users,
            dummy,
        })
    }

    /// True if `username` is in the file and `password` matches its hash. Takes about as long
    /// for an unknown user as for a wrong password. A hash too costly to check is refused
    /// unverified, with a warning naming the user.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        let Some(hash) = self.users.get(username) else {
            // The same work as checking a typical user; the result is irrelevant.
            let _ = self.dummy.verify(password);
            return false;
        };
        match hash.verify(password) {
            Ok(matched) => matched,
            Err(cost) => {
                warn!(
                    user = %username,
                    file = %self.path.display(),
                    error = %cost,
                    "login refused: the password hash is too costly to verify"
                );
                let _ = self.dummy.verify(password);
                false
            }
        }
    }

    /// The hash stored for `username`.
    pub fn get(&self, username: &str) -> Option<&PasswordHash> {
        self.users.get(username)
    }

    /// True if `username` has an entry.
    #[cfg(test)]
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// The users, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True if the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Splits a trimmed, non-comment line into its user and parsed hash.
fn parse_entry(line: &str) -> Result<(&str, PasswordHash), FileErrorKind> {
    let (user, hash) = split_entry(line)?;
    let hash = PasswordHash::parse(hash).map_err(|reason| FileErrorKind::Hash {
        user: user.to_string(),
        reason,
    })?;
    Ok((user, hash))
}

/// Splits a trimmed, non-comment line at its first `:` into the user and what follows (the
/// hash, or a plain-text password before `shardmq passwd -U`), both trimmed.
pub(crate) fn split_entry(line: &str) -> Result<(&str, &str), FileErrorKind> {
    let (user, rest) = line
        .split_once(':')
        .ok_or_else(|| FileErrorKind::MissingColon(line.to_string()))?;
    let user = user.trim();
    if user.is_empty() {
        return Err(FileErrorKind::EmptyUsername);
    }
    Ok((user, rest.trim()))
}

/// The dummy of the most common shape (scheme, parameters, lengths) among `hashes` that may be
/// checked at all; ties go to the one that sorts last in file form, so the choice does not
/// depend on hash-map order. The default `$7$` dummy for a file with no such entry.
fn typical_dummy<'a>(hashes: impl Iterator<Item = &'a PasswordHash>) -> PasswordHash {
    let mut counts: HashMap<PasswordHash, usize> = HashMap::new();
    for hash in hashes.filter(|hash| hash.check_cost().is_ok()) {
        *counts.entry(hash.dummy()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(dummy, count)| (count, dummy.to_string(), dummy))
        .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
        .map_or_else(PasswordHash::default_dummy, |(_, _, dummy)| dummy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# users made by mosquitto_passwd 2.0.11
alice:$7$101$gpQgGDHjUhTtOFv1$vKhxZ3O143abpGPbffl7fWCfZOey8QKE9uIY47tuWdWni+YgiaOeJ8A6TMzlu+yH4qdBU77XYqOVDd4ZbJpMSw==

  carol : $6$EzFCTj8NM5NHczhq$sgGBnvatk0pmmByizO3NhONRbwl0XnnZOf8ZQ5bPC7XJ9bLhhVK1/0YNPLoBL22se9vPY5aiIrXgO+iBrGju2w==\r
legacy:$md5$NaCl$b7ac67b360c24baef6ed28a919ddb6d5
";

    fn parse(text: &str) -> Result<PasswordFile, FileError> {
        PasswordFile::parse(text, Path::new("/etc/shardmq/passwd"))
    }

    #[test]
    fn loads_users_and_verifies() {
        let file = parse(FILE).expect("valid");
        assert_eq!(file.len(), 3);
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"hunter2"));
        assert!(file.verify("carol", b"hunter2"));
        assert!(file.verify("legacy", b"secret"));
        assert!(!file.verify("nobody", b"secret"));
        assert!(!file.verify("", b""));
        assert!(file.contains("carol") && !file.contains("bob"));
        assert!(file.get("legacy").is_some_and(PasswordHash::is_legacy));
        let mut users: Vec<_> = file.users().collect();
        users.sort_unstable();
        assert_eq!(users, ["alice", "carol", "legacy"]);
        assert_eq!(file.path(), Path::new("/etc/shardmq/passwd"));
    }

    #[test]
    fn empty_file_has_no_users() {
        let file = parse("# nothing\n\n").expect("valid");
        assert!(file.is_empty());
        assert_eq!(file.dummy, PasswordHash::default_dummy());
    }

    #[test]
    fn unknown_users_cost_what_the_common_entry_costs() {
        // Two Argon2id users (Mosquitto 2.1's parameters), one `$7$`: the dummy is Argon2id
        // with the same parameters, not the cheaper `$7$` default.
        let argon = "$argon2id$v=19$m=47104,t=1,p=1$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gI\
                     SIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw$sPEIinca8RYJDxlc8jKe8jHjzxdTavdKcP7\
                     6J1S7ooh3DLbwJDJDDG1g0m72j5JdJsuYN3v4eY69IUNv3kZWEA";
        let text = format!(
            "a:{argon}\nb:{argon}\n{}",
            FILE.lines().nth(1).expect("alice")
        );
        let file = parse(&text).expect("valid");
        assert_eq!(file.dummy, file.get("a").expect("a").dummy());
        assert!(file.verify("a", b"argon-pw") && !file.verify("nobody", b"argon-pw"));
        // An entry too costly to check is never the model, and its user cannot log in.
        let slow =
            "$7$4000000000$gpQgGDHjUhTtOFv1$vKhxZ3O143abpGPbffl7fWCfZOey8QKE9uIY47tuWdWni+Ygia\
                    OeJ8A6TMzlu+yH4qdBU77XYqOVDd4ZbJpMSw==";
        let text = format!(
            "s1:{slow}\ns2:{slow}\n{}",
            FILE.lines().nth(1).expect("alice")
        );
        let file = parse(&text).expect("a costly hash still loads");
        assert_eq!(file.dummy, file.get("alice").expect("alice").dummy());
        assert!(!file.verify("s1", b"secret"));
        assert!(file.verify("alice", b"secret"));
    }

    #[test]
    fn errors_name_file_line_and_token() {
        let cases = [
            ("# comment\nbob\n", 2, "expected `user:hash`, found `bob`"),
            (":$7$101$AAAA$AAAA\n", 1, "empty username"),
            (
                "\n\nbob:hunter2\n",
                3,
                "password hash of user `bob`: not a password hash",
            ),
            (
                "bob:$9$x$y\n",
                1,
                "password hash of user `bob`: unknown hash scheme `$9$`",
            ),
        ];
        for (text, line, message) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.line, Some(line), "{text:?}");
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("/etc/shardmq/passwd:{line}: {message}")),
                "{shown}"
            );
        }
        let twice = format!("{FILE}alice:$md5$x$b7ac67b360c24baef6ed28a919ddb6d5\n");
        let err = parse(&twice).expect_err("duplicate");
        assert_eq!(err.line, Some(6));
        assert!(
            err.to_string()
                .contains("user `alice` already defined on line 2"),
            "{err}"
        );
    }

    #[test]
    fn load_reads_the_file() {
        let temp = crate::auth::temp_file(FILE);
        let path = temp.path().to_path_buf();
        let file = PasswordFile::load(&path).expect("loads");
        assert!(file.verify("alice", b"secret"));
        drop(temp);
        assert!(PasswordFile::load(&path).is_err());
    }
}
