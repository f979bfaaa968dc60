//! `shardmq passwd`: manages a password file the way `mosquitto_passwd` does.
//!
//! ```text
//! shardmq passwd [-c | -D] <file> <user>             # prompts for the password (twice)
//! shardmq passwd [-c] -b <file> <user> <password>    # batch: password on the command line
//! shardmq passwd -U <file>                           # hash a plain-text user:password file
//! ```
//!
//! `-c` creates the file, overwriting one that exists (`-` writes the entry to standard output);
//! without it the file must exist and the user's entry is added or replaced. `-D` deletes a user.
//! `-I <n>` sets the PBKDF2 iterations (default 101). The password is read without echo from a
//! terminal, or as two lines from standard input otherwise.
//!
//! Where it differs from `mosquitto_passwd`, on purpose:
//! - it writes only `$7$` (PBKDF2-HMAC-SHA512); `-H sha512-pbkdf2` is accepted, `-H sha512` is
//!   not — `$6$` and legacy `$md5$` entries are verified, never written (see
//!   [`crate::auth::password`]);
//! - comments and blank lines survive `-D`, `-U` and updates (`mosquitto_passwd` calls such a
//!   file corrupt);
//! - `-U` leaves entries that already hold a hash as they are, so running it twice is harmless
//!   (`mosquitto_passwd` would hash the hash and lock the user out);
//! - the file is replaced atomically: the new content goes to a temporary file in the same
//!   directory, is synced, and renamed over the old one, so a crash leaves either the old or the
//!   new file, never half of one. The new file keeps the old one's permission bits and owner (a
//!   new file gets 0600); a symlink is followed and its target replaced.

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::auth::password::{PasswordHash, DEFAULT_ITERATIONS};
use crate::auth::password_file::split_entry;
use crate::auth::{FileError, FileErrorKind, MAX_USERNAME_LEN};

/// Longest username or password accepted (an MQTT string length is a u16).
const MAX_FIELD_LEN: usize = 65_535;

/// Arguments of `shardmq passwd` (flags as in `mosquitto_passwd`). `Debug` hides the password.
#[derive(clap::Args, Clone, Default, Eq, PartialEq)]
pub struct PasswdArgs {
    /// Create a new password file, overwriting an existing one ("-" as the file writes the
    /// entry to standard output).
    #[arg(short = 'c', conflicts_with_all = ["delete", "update"])]
    pub create: bool,
    /// Batch mode: take the password from the command line (it is then visible to other local
    /// users in the process list and in shell history).
    #[arg(short = 'b', conflicts_with_all = ["delete", "update"])]
    pub batch: bool,
    /// Delete the user rather than add or update its password.
    #[arg(short = 'D', conflicts_with = "update")]
    pub delete: bool,
    /// Hash every plain-text password of a `user:password` file, in place.
    #[arg(short = 'U')]
    pub update: bool,
    /// Hash to write; only sha512-pbkdf2 (the default) is supported.
    #[arg(short = 'H', value_name = "HASH", value_parser = ["sha512-pbkdf2"])]
    pub hash: Option<String>,
    /// PBKDF2 iterations for new hashes (default 101, as mosquitto_passwd).
    #[arg(short = 'I', value_name = "ITERATIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: Option<u32>,
    /// The password file.
    pub file: PathBuf,
    /// The user to add, update or delete.
    pub username: Option<String>,
    /// The password (batch mode only).
    pub password: Option<String>,
}

impl fmt::Debug for PasswdArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswdArgs")
            .field("create", &self.create)
            .field("batch", &self.batch)
            .field("delete", &self.delete)
            .field("update", &self.update)
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .field("file", &self.file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// What one invocation does, once the argument combination is checked.
#[derive(Debug, Eq, PartialEq)]
enum Action {
    /// Add or update `user`; `password` `None` means ask for it.
    Set {
        create: bool,
        user: String,
        password: Option<String>,
    },
    Delete {
        user: String,
    },
    Convert,
}

impl Action {
    fn from_args(args: &PasswdArgs) -> anyhow::Result<Action> {
        let exclusive = [args.create, args.delete, args.update];
        if exclusive.iter().filter(|&&set| set).count() > 1 {
            bail!("-c, -D and -U cannot be used together");
        }
        if args.batch && (args.delete || args.update) {
            bail!("-b cannot be used with -D or -U");
        }
        if args.update {
            if args.username.is_some() {
                bail!("-U takes only the password file");
            }
            return Ok(Action::Convert);
        }
        let Some(user) = args.username.clone() else {
            bail!("missing username");
        };
        validate_username(&user)?;
        if args.delete {
            if args.password.is_some() {
                bail!("-D takes the password file and a username only");
            }
            return Ok(Action::Delete { user });
        }
        let password = match (args.batch, &args.password) {
            (true, None) => bail!("-b needs the password after the username"),
            (false, Some(_)) => bail!("a password on the command line needs -b"),
            (_, password) => password.clone(),
        };
        if password.as_ref().is_some_and(|p| p.len() > MAX_FIELD_LEN) {
            bail!("the password must be at most {MAX_FIELD_LEN} bytes");
        }
        Ok(Action::Set {
            create: args.create,
            user,
            password,
        })
    }
}

/// Runs `shardmq passwd`.
pub fn run(args: PasswdArgs) -> anyhow::Result<()> {
    let action = Action::from_args(&args)?;
    let iterations = args.iterations.unwrap_or(DEFAULT_ITERATIONS);
    let path = args.file.as_path();
    match action {
        Action::Convert => {
            let text = read_existing(path)?;
            let (converted, hashed, kept) = hash_plaintext(&text, path, iterations)?;
            write_atomic(path, &converted)?;
            println!("Hashed the passwords of {hashed} users");
            if kept > 0 {
                eprintln!("{kept} entries already held a hash and were left as they were");
            }
        }
        Action::Delete { user } => {
            let text = read_existing(path)?;
            let edited = delete_user(&text, path, &user)?;
            if !edited.changed {
                bail!("user `{user}` not found in {}", path.display());
            }
            write_atomic(path, &edited.text)?;
        }
        Action::Set {
            create,
            user,
            password,
        } => {
            // Check the file before asking for a password.
            let existing = if create {
                String::new()
            } else {
                read_existing(path)?
            };
            let password = match password {
                Some(password) => password,
                None => read_new_password()?,
            };
            let hash = PasswordHash::new_pbkdf2(password.as_bytes(), iterations)?;
            let entry = format!("{user}:{hash}");
            if create && path == Path::new("-") {
                println!("{entry}");
                return Ok(());
            }
            let edited = set_user(&existing, path, &user, &entry)?;
            if edited.changed {
                println!("Updating password for user {user}");
            } else {
                println!("Adding password for user {user}");
            }
            write_atomic(path, &edited.text)?;
        }
    }
    Ok(())
}

/// New file text, and whether the edit found what it looked for.
struct Edited {
    text: String,
    changed: bool,
}

/// The user of a password file line, or `None` for a blank or comment line.
fn line_user(line: &str) -> Result<Option<&str>, FileErrorKind> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    split_entry(line).map(|(user, _)| Some(user))
}

/// Replaces the entry of `user` with `entry` (a whole `user:hash` line), or appends it. Other
/// lines are kept; later duplicate entries of `user` are dropped. `changed`: it was replaced.
fn set_user(text: &str, path: &Path, user: &str, entry: &str) -> Result<Edited, FileError> {
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    let mut found = false;
    for (index, line) in text.lines().enumerate() {
        match line_user(line).map_err(|kind| FileError::at(path, index + 1, kind))? {
            Some(name) if name == user => {
                if !found {
                    out.push_str(entry);
                    out.push('\n');
                }
                found = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !found {
        out.push_str(entry);
        out.push('\n');
    }
    Ok(Edited {
        text: out,
        changed: found,
    })
}

/// Drops every entry of `user`. `changed`: there was one.
fn delete_user(text: &str, path: &Path, user: &str) -> Result<Edited, FileError> {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for (index, line) in text.lines().enumerate() {
        match line_user(line).map_err(|kind| FileError::at(path, index + 1, kind))? {
            Some(name) if name == user => found = true,
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(Edited {
        text: out,
        changed: found,
    })
}

/// Hashes the plain-text password of every entry; entries that already hold a hash are kept.
/// Returns the new text, how many entries were hashed and how many were kept.
fn hash_plaintext(
    text: &str,
    path: &Path,
    iterations: u32,
) -> anyhow::Result<(String, usize, usize)> {
    let mut out = String::with_capacity(text.len() * 2);
    let mut converted = 0;
    let mut kept = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let Some(user) = line_user(line).map_err(|kind| FileError::at(path, number, kind))? else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        // line_user found the colon.
        let password = line.split_once(':').map_or("", |(_, value)| value.trim());
        if PasswordHash::parse(password).is_ok() {
            kept += 1;
            out.push_str(line);
        } else if password.is_empty() {
            bail!(
                "{}:{number}: empty password for user `{user}`",
                path.display()
            );
        } else {
            let hash = PasswordHash::new_pbkdf2(password.as_bytes(), iterations)?;
            out.push_str(&format!("{user}:{hash}"));
            converted += 1;
        }
        out.push('\n');
    }
    Ok((out, converted, kept))
}

/// A username `mosquitto_passwd` would accept (non-empty, no `:`, no control characters) and
/// the broker lets log in (at most [`MAX_USERNAME_LEN`] bytes).
pub(crate) fn validate_username(user: &str) -> anyhow::Result<()> {
    if user.is_empty() {
        bail!("the username must not be empty");
    }
    if user.len() > MAX_USERNAME_LEN {
        bail!("the username must be at most {MAX_USERNAME_LEN} bytes (the broker refuses longer ones)");
    }
    if user.contains(':') {
        bail!("the username must not contain `:`");
    }
    if user.chars().any(char::is_control) {
        bail!("the username must not contain control characters");
    }
    if user.trim() != user || user.starts_with('#') {
        bail!("the username must not start with `#` or blanks, nor end with blanks");
    }
    Ok(())
}

fn read_existing(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read password file {} (use -c to create one)",
            path.display()
        )
    })
}

/// Asks for the new password twice: hidden on a terminal, two lines otherwise.
pub(crate) fn read_new_password() -> anyhow::Result<String> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let first = prompt_hidden("Password: ")?;
        let second = prompt_hidden("Reenter password: ")?;
        confirm(first, second)
    } else {
        read_password_lines(&mut stdin.lock())
    }
}

/// Reads a password and its confirmation as two lines of `input`.
fn read_password_lines(input: &mut dyn BufRead) -> anyhow::Result<String> {
    let first = read_line(input)?;
    let second = read_line(input)?;
    confirm(first, second)
}

fn confirm(first: String, second: String) -> anyhow::Result<String> {
    if first != second {
        bail!("passwords do not match");
    }
    if first.is_empty() {
        bail!("empty password");
    }
    if first.len() > MAX_FIELD_LEN {
        bail!("the password must be at most {MAX_FIELD_LEN} bytes");
    }
    Ok(first)
}

fn read_line(input: &mut dyn BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    if input
        .read_line(&mut line)
        .context("cannot read the password")?
        == 0
    {
        bail!("no password given: standard input ended");
    }
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    let mut stderr = io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let line = {
        let _quiet = EchoOff::new()?;
        read_line(&mut io::stdin().lock())
    };
    // The user's Enter was not echoed either.
    writeln!(stderr)?;
    line
}

/// Turns terminal echo off on standard input while alive.
struct EchoOff {
    saved: libc::termios,
}

impl EchoOff {
    fn new() -> io::Result<EchoOff> {
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: STDIN_FILENO is open for the life of the process and `saved` is valid
        // for a write of one termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, saved.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: tcgetattr returned 0, so it filled `saved`.
        let saved = unsafe { saved.assume_init() };
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: `quiet` is a valid termios read by the call.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: `saved` is the valid termios tcgetattr returned. A failure cannot be reported
        // from drop; the terminal then stays silent until `reset`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &self.saved) };
    }
}

/// Replaces `path` with `contents` atomically (see the module doc).
fn write_atomic(path: &Path, contents: &str) -> anyhow::Result<()> {
    let target = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(err) if err.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot resolve {}", path.display()));
        }
    };
    let name = target
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let old = fs::metadata(&target).ok();
    let mode = old.as_ref().map_or(0o600, |meta| meta.mode() & 0o7777);
    if mode & 0o007 != 0 {
        eprintln!(
            "warning: {} is readable or writable by every local user; consider chmod 600",
            path.display()
        );
    }
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|err| anyhow::anyhow!("no random bytes: {err}"))?;
    let suffix: String = suffix.iter().map(|byte| format!("{byte:02x}")).collect();
    let temp = dir.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));

    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        if let Some(old) = &old {
            let new = file.metadata()?;
            if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
                std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()))?;
            }
        }
        // Explicit, so the umask does not decide.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &target)?;
        File::open(&dir)?.sync_all()
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&temp);
        anyhow::Error::new(err).context(format!("cannot write {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::auth::password_file::PasswordFile;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: PasswdArgs,
    }

    fn args(words: &[&str]) -> PasswdArgs {
        let mut argv = vec!["passwd"];
        argv.extend_from_slice(words);
        Cli::try_parse_from(argv).expect("valid arguments").args
    }

    /// A real temporary directory, removed when dropped.
    struct TempDir(tempfile::TempDir);

    impl TempDir {
        fn new() -> TempDir {
            TempDir(tempfile::tempdir().expect("temp dir"))
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.path().join(name)
        }
    }

    fn path_str(path: &Path) -> &str {
        path.to_str().expect("utf-8 temp path")
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", args(&["-b", "f", "u", "s3cret"]));
        assert!(
            shown.contains("<hidden>") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn argument_combinations() {
        let set = Action::from_args(&args(&["-c", "-b", "f", "u", "p"])).expect("ok");
        assert_eq!(
            set,
            Action::Set {
                create: true,
                user: "u".into(),
                password: Some("p".into())
            }
        );
        let prompt = Action::from_args(&args(&["f", "u"])).expect("ok");
        assert!(matches!(prompt, Action::Set { password: None, .. }));
        assert_eq!(
            Action::from_args(&args(&["-D", "f", "u"])).expect("ok"),
            Action::Delete { user: "u".into() }
        );
        assert_eq!(
            Action::from_args(&args(&["-U", "f"])).expect("ok"),
            Action::Convert
        );
        let combined = args(&["-cb", "-I", "1000", "-H", "sha512-pbkdf2", "f", "u", "p"]);
        assert_eq!(combined.iterations, Some(1000));
        assert!(combined.create && combined.batch);

        for bad in [
            &["-b", "f", "u"][..],
            &["f", "u", "p"],
            &["f"],
            &["-U", "f", "u"],
            &["-b", "f", "a:b", "p"],
            &["-b", "f", "", "p"],
            &["-b", "f", "#u", "p"],
            &["-D", "f", "u", "p"],
        ] {
            assert!(Action::from_args(&args(bad)).is_err(), "{bad:?}");
        }
        for refused_by_clap in [
            &["-c", "-D", "f", "u"][..],
            &["-D", "-U", "f"],
            &["-b", "-D", "f", "u", "p"],
            &["-H", "sha512", "f", "u"],
            &["-I", "0", "f", "u"],
        ] {
            let mut argv = vec!["passwd"];
            argv.extend_from_slice(refused_by_clap);
            assert!(Cli::try_parse_from(argv).is_err(), "{refused_by_clap:?}");
        }
    }

    #[test]
    fn create_add_update_delete() {
        let dir = TempDir::new();
        let file = dir.file("passwd");
        let f = path_str(&file);
        run(args(&["-c", "-b", f, "alice", "secret"])).expect("create");
        let mode = fs::metadata(&file).expect("exists").mode() & 0o777;
        assert_eq!(mode, 0o600);
        run(args(&["-b", f, "bob", "hunter2"])).expect("add");
        run(args(&["-b", "-I", "7", f, "alice", "changed"])).expect("update");
        let text = fs::read_to_string(&file).expect("read");
        assert_eq!(text.lines().count(), 2);
        assert!(text
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("alice:$7$7$")));
        let loaded = PasswordFile::load(&file).expect("loads");
        assert!(loaded.verify("alice", b"changed") && !loaded.verify("alice", b"secret"));
        assert!(loaded.verify("bob", b"hunter2"));

        run(args(&["-D", f, "alice"])).expect("delete");
        let loaded = PasswordFile::load(&file).expect("loads");
        assert!(!loaded.contains("alice") && loaded.contains("bob"));
        assert!(run(args(&["-D", f, "alice"])).is_err(), "already gone");

        // -c overwrites.
        run(args(&["-c", "-b", f, "carol", "x"])).expect("recreate");
        let loaded = PasswordFile::load(&file).expect("loads");
        assert_eq!(loaded.len(), 1);
        assert!(loaded.verify("carol", b"x"));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.0.path()).expect("list").count(), 1);
    }

    #[test]
    fn update_without_c_needs_the_file() {
        let dir = TempDir::new();
        let file = dir.file("none");
        let err = run(args(&["-b", path_str(&file), "u", "p"])).expect_err("missing");
        assert!(format!("{err:#}").contains("use -c"), "{err:#}");
        assert!(!file.exists());
    }

    #[test]
    fn keeps_mode_comments_and_other_lines() {
        let dir = TempDir::new();
        let file = dir.file("passwd");
        let original = "\
# managed by ops
bob:$6$EzFCTj8NM5NHczhq$sgGBnvatk0pmmByizO3NhONRbwl0XnnZOf8ZQ5bPC7XJ9bLhhVK1/0YNPLoBL22se9vPY5aiIrXgO+iBrGju2w==

alice:$md5$NaCl$b7ac67b360c24baef6ed28a919ddb6d5
";
        fs::write(&file, original).expect("write");
        fs::set_permissions(&file, Permissions::from_mode(0o640)).expect("chmod");
        run(args(&["-b", path_str(&file), "alice", "new"])).expect("update");
        let text = fs::read_to_string(&file).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..3], original.lines().collect::<Vec<_>>()[..3]);
        assert!(lines[3].starts_with("alice:$7$101$"), "{text}");
        assert_eq!(fs::metadata(&file).expect("exists").mode() & 0o777, 0o640);
    }

    #[test]
    fn follows_symlinks() {
        let dir = TempDir::new();
        let real = dir.file("real");
        let link = dir.file("link");
        run(args(&["-c", "-b", path_str(&real), "a", "1"])).expect("create");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        run(args(&["-b", path_str(&link), "b", "2"])).expect("via link");
        assert!(fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink());
        assert!(PasswordFile::load(&real).expect("loads").verify("b", b"2"));
    }

    #[test]
    fn converts_plain_text_once() {
        let dir = TempDir::new();
        let file = dir.file("passwd");
        fs::write(&file, "# plain\nu1:plain1\n u2 : pl:ain 2 \n\n").expect("write");
        run(args(&["-U", path_str(&file)])).expect("convert");
        let first = fs::read_to_string(&file).expect("read");
        let loaded = PasswordFile::load(&file).expect("loads");
        assert!(loaded.verify("u1", b"plain1"));
        assert!(loaded.verify("u2", b"pl:ain 2"));
        assert!(first.starts_with("# plain\n"));
        // A second run keeps the hashes.
        run(args(&["-U", path_str(&file)])).expect("again");
        assert_eq!(fs::read_to_string(&file).expect("read"), first);

        fs::write(&file, "u1:\n").expect("write");
        let err = run(args(&["-U", path_str(&file)])).expect_err("empty");
        assert!(
            err.to_string().contains(":1: empty password for user `u1`"),
            "{err}"
        );
        fs::write(&file, "u1 plain\n").expect("write");
        let err = run(args(&["-U", path_str(&file)])).expect_err("corrupt");
        assert!(
            err.to_string().contains(":1: expected `user:hash`"),
            "{err}"
        );
    }

    #[test]
    fn password_lines() {
        let read = |input: &str| read_password_lines(&mut io::Cursor::new(input.as_bytes()));
        assert_eq!(read("pw\npw\n").expect("ok"), "pw");
        assert_eq!(read("p w\r\np w\r\n").expect("ok"), "p w");
        assert!(read("pw\npx\n").is_err());
        assert!(read("\n\n").is_err());
        assert!(read("pw\n").is_err());
        assert!(read("").is_err());
    }

    #[test]
    fn text_edits() {
        let path = Path::new("f");
        let text = "# c\na:x\nb:y\na:z\n";
        let set = set_user(text, path, "a", "a:NEW").expect("ok");
        assert!(set.changed);
        assert_eq!(set.text, "# c\na:NEW\nb:y\n");
        let add = set_user(text, path, "c", "c:NEW").expect("ok");
        assert!(!add.changed);
        assert_eq!(add.text, "# c\na:x\nb:y\na:z\nc:NEW\n");
        let del = delete_user(text, path, "a").expect("ok");
        assert!(del.changed);
        assert_eq!(del.text, "# c\nb:y\n");
        let err = set_user("a:x\nbroken\n", path, "a", "a:1")
            .err()
            .expect("corrupt");
        assert_eq!(err.line, Some(2));
    }
}
