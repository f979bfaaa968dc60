//! `shardmq users` and `shardmq import`: manage what the Redis backend reads (the key layout is
//! documented in [`crate::control_core::redis`]).
//!
//! ```text
//! shardmq users [--redis-url URL] [-I N] add <user> [<password>]
//! shardmq users [--redis-url URL] [-I N] passwd <user> [<password>]
//! shardmq users [--redis-url URL] delete <user>
//! shardmq users [--redis-url URL] list
//! shardmq import [--redis-url URL] [--password-file F] [--acl-file F] [--relations-file F]
//!                [--auto-subscribe-file F]
//! ```
//!
//! The URL defaults to the configuration's `[redis] url` (`shardmq --config F users ...`).
//! Passwords are asked for as `shardmq passwd` asks (twice, hidden on a terminal) unless given
//! on the command line, where other local users can see them; they are stored as `$7$`
//! (PBKDF2-SHA512, `-I` iterations, default 101), the format `mosquitto_passwd` writes.
//!
//! `add` refuses a user that has a password already and `passwd` one that has none. `delete`
//! removes the user's hash, own ACL and auto-subscribe lists and follow set, and publishes its
//! name on `shardmq:invalidate`, so its connected sessions lose their rules at once (others'
//! follow sets that name it are left: a user that does not exist cannot log in).
//!
//! `import` checks every file with the broker's own parsers before it writes anything, so a bad
//! file is reported with its line and Redis is left as it was. It then writes in one
//! `MULTI`/`EXEC` transaction and publishes `*`:
//! - password file: each user's `password` field is set; other users and fields stay;
//! - ACL file: `shardmq:acl` and every `shardmq:acl:user:*` list are replaced: the `topic` lines
//!   before any `user` line and every `pattern` line go to `shardmq:acl`, each user's `topic`
//!   lines to its own list;
//! - relations file: every `shardmq:follows:*` set is replaced;
//! - auto-subscribe file: `shardmq:autosub` and every `shardmq:autosub:user:*` list are
//!   replaced, lines before any `user` line going to the shared list.
//!
//! Comments and blank lines are not copied.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context};
use redis::{Client, Connection};

use crate::auth::acl_file::load_acl_file;
use crate::auth::auto_subscribe_file::load_auto_subscribe_file;
use crate::auth::passwd::{read_new_password, validate_username};
use crate::auth::password::{PasswordHash, DEFAULT_ITERATIONS};
use crate::auth::password_file::PasswordFile;
use crate::auth::relations_file::load_relations_file;
use crate::config::AccessFiles;
use crate::control_core::redis::keys;

/// How long the commands wait for Redis.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `shardmq users`.
#[derive(clap::Args, Clone, Debug)]
pub struct UsersArgs {
    /// Redis URL (default: the configuration's `[redis] url`).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// PBKDF2 iterations for new hashes (default 101, as mosquitto_passwd).
    #[arg(short = 'I', value_name = "ITERATIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: Option<u32>,
    /// What to do.
    #[command(subcommand)]
    pub action: UsersAction,
}

/// A `shardmq users` action. `Debug` hides passwords.
#[derive(clap::Subcommand, Clone)]
pub enum UsersAction {
    /// Adds a user (asks for the password unless it is given).
    Add {
        /// The user name.
        user: String,
        /// The password (visible to other local users when given here).
        password: Option<String>,
    },
    /// Changes a user's password (asks for it unless it is given).
    Passwd {
        /// The user name.
        user: String,
        /// The new password (visible to other local users when given here).
        password: Option<String>,
    },
    /// Deletes a user with its own rules, auto-subscriptions and follow set.
    Delete {
        /// The user name.
        user: String,
    },
    /// Lists the users, one a line.
    List,
}

impl fmt::Debug for UsersAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |password: &Option<String>| password.as_ref().map(|_| "<hidden>");
        match self {
            UsersAction::Add { user, password } => f
                .debug_struct("Add")
                .field("user", user)
                .field("password", &hidden(password))
                .finish(),
            UsersAction::Passwd { user, password } => f
                .debug_struct("Passwd")
                .field("user", user)
                .field("password", &hidden(password))
                .finish(),
            UsersAction::Delete { user } => f.debug_struct("Delete").field("user", user).finish(),
            UsersAction::List => f.write_str("List"),
        }
    }
}

/// Arguments of `shardmq import`.
#[derive(clap::Args, Clone, Debug)]
pub struct ImportArgs {
    /// Redis URL (default: the configuration's `[redis] url`).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// The files to import.
    #[command(flatten)]
    pub files: AccessFiles,
}

/// Runs `shardmq users`; `configured` is the configuration's `[redis] url`.
pub fn run_users(args: &UsersArgs, configured: Option<&str>) -> anyhow::Result<()> {
    let iterations = args.iterations.unwrap_or(DEFAULT_ITERATIONS);
    if let UsersAction::Add { user, .. }
    | UsersAction::Passwd { user, .. }
    | UsersAction::Delete { user } = &args.action
    {
        validate_username(user)?;
    }
    let mut redis = connect(args.redis_url.as_deref().or(configured))?;
    match &args.action {
        UsersAction::Add { user, password } => {
            if has_password(&mut redis, user)? {
                bail!("user `{user}` already exists (`shardmq users passwd` changes its password)");
            }
            let hash = new_hash(password.as_deref(), iterations)?;
            let added: bool = redis::cmd("HSETNX")
                .arg(keys::user(user))
                .arg(keys::PASSWORD)
                .arg(hash)
                .query(&mut redis)
                .context("adding the user")?;
            if !added {
                bail!("user `{user}` was added by someone else meanwhile");
            }
            println!("Adding password for user {user}");
        }
        UsersAction::Passwd { user, password } => {
            if !has_password(&mut redis, user)? {
                bail!("no user `{user}` (`shardmq users add` adds one)");
            }
            let hash = new_hash(password.as_deref(), iterations)?;
            redis::cmd("HSET")
                .arg(keys::user(user))
                .arg(keys::PASSWORD)
                .arg(hash)
                .exec(&mut redis)
                .context("setting the password")?;
            println!("Updating password for user {user}");
        }
        UsersAction::Delete { user } => {
            let (deleted, ..): (u32, u32, u32, u32) = redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(keys::user(user))
                .cmd("DEL")
                .arg(keys::user_acl(user))
                .cmd("DEL")
                .arg(keys::follows(user))
                .cmd("DEL")
                .arg(keys::user_auto_subscribe(user))
                .query(&mut redis)
                .context("deleting the user")?;
            if deleted == 0 {
                bail!("no user `{user}`");
            }
            redis::cmd("PUBLISH")
                .arg(keys::INVALIDATE)
                .arg(user)
                .exec(&mut redis)
                .context("announcing the change")?;
            println!("Deleted user {user}");
        }
        UsersAction::List => {
            let mut names: Vec<String> = scan(&mut redis, keys::USER_PREFIX)?
                .into_iter()
                .filter_map(|key| key.strip_prefix(keys::USER_PREFIX).map(str::to_owned))
                .collect();
            names.sort_unstable();
            for name in names {
                println!("{name}");
            }
        }
    }
    Ok(())
}

/// Runs `shardmq import`; `configured` is the configuration's `[redis] url`.
pub fn run_import(args: &ImportArgs, configured: Option<&str>) -> anyhow::Result<()> {
    if args.files.is_empty() {
        bail!("nothing to import: give at least one of --password-file, --acl-file, --relations-file, --auto-subscribe-file");
    }
    let plan = ImportPlan::read(args)?;
    let mut redis = connect(args.redis_url.as_deref().or(configured))?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    if let Some(users) = &plan.users {
        for (user, hash) in users {
            pipe.cmd("HSET")
                .arg(keys::user(user))
                .arg(keys::PASSWORD)
                .arg(hash)
                .ignore();
        }
    }
    if let Some(acl) = &plan.acl {
        let mut old = scan(&mut redis, keys::USER_ACL_PREFIX)?;
        old.push(keys::ACL.to_owned());
        push_tables(&mut pipe, &old, keys::ACL, acl, keys::user_acl);
    }
    if let Some(relations) = &plan.relations {
        for key in scan(&mut redis, keys::FOLLOWS_PREFIX)? {
            pipe.cmd("DEL").arg(key).ignore();
        }
        for (user, followees) in relations {
            pipe.cmd("SADD")
                .arg(keys::follows(user))
                .arg(followees)
                .ignore();
        }
    }
    if let Some(auto) = &plan.auto_subscribe {
        let mut old = scan(&mut redis, keys::USER_AUTO_SUBSCRIBE_PREFIX)?;
        old.push(keys::AUTO_SUBSCRIBE.to_owned());
        push_tables(
            &mut pipe,
            &old,
            keys::AUTO_SUBSCRIBE,
            auto,
            keys::user_auto_subscribe,
        );
    }
    pipe.cmd("PUBLISH")
        .arg(keys::INVALIDATE)
        .arg(keys::EVERYTHING)
        .ignore();
    pipe.exec(&mut redis).context("writing to Redis")?;
    plan.print_summary();
    Ok(())
}

/// Deletes `old` keys, then writes the shared lines to `shared_key` and each user's own lines
/// to `user_key(name)`.
fn push_tables(
    pipe: &mut redis::Pipeline,
    old: &[String],
    shared_key: &str,
    table: &Sections,
    user_key: fn(&str) -> String,
) {
    for key in old {
        pipe.cmd("DEL").arg(key).ignore();
    }
    if !table.shared.is_empty() {
        pipe.cmd("RPUSH")
            .arg(shared_key)
            .arg(&table.shared)
            .ignore();
    }
    for (user, lines) in &table.users {
        pipe.cmd("RPUSH").arg(user_key(user)).arg(lines).ignore();
    }
}

/// A rule file split into its shared lines and each user's own lines.
#[derive(Debug, Default, Eq, PartialEq)]
struct Sections {
    shared: Vec<String>,
    users: BTreeMap<String, Vec<String>>,
}

impl Sections {
    /// Splits checked file text at its `user` lines; lines whose keyword is `always_shared`
    /// stay shared wherever they stand (`pattern` lines of an ACL file).
    fn split(text: &str, always_shared: Option<&str>) -> Sections {
        let mut sections = Sections::default();
        let mut user: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(word, rest)| (word, rest.trim_start()));
            if word == "user" {
                user = Some(rest.to_owned());
                continue;
            }
            match &user {
                Some(name) if Some(word) != always_shared => sections
                    .users
                    .entry(name.clone())
                    .or_default()
                    .push(line.to_owned()),
                _ => sections.shared.push(line.to_owned()),
            }
        }
        sections
    }
}

/// Everything `import` writes, read and checked before anything is written.
#[derive(Debug, Default)]
struct ImportPlan {
    users: Option<Vec<(String, String)>>,
    acl: Option<Sections>,
    relations: Option<BTreeMap<String, Vec<String>>>,
    auto_subscribe: Option<Sections>,
}

impl ImportPlan {
    fn read(args: &ImportArgs) -> anyhow::Result<ImportPlan> {
        let mut plan = ImportPlan::default();
        if let Some(path) = &args.files.password_file {
            let file = PasswordFile::load(path)?;
            let mut users: Vec<(String, String)> = file
                .users()
                .filter_map(|user| {
                    file.get(user)
                        .map(|hash| (user.to_owned(), hash.to_string()))
                })
                .collect();
            users.sort_unstable();
            plan.users = Some(users);
        }
        if let Some(path) = &args.files.acl_file {
            load_acl_file(path)?;
            plan.acl = Some(Sections::split(&read(path)?, Some("pattern")));
        }
        if let Some(path) = &args.files.relations_file {
            load_relations_file(path)?;
            let mut relations: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for line in read(path)?.lines().map(str::trim) {
                if line.starts_with('#') {
                    continue;
                }
                let mut names = line.split_whitespace();
                if let Some(user) = names.next() {
                    let followees = relations.entry(user.to_owned()).or_default();
                    followees.extend(names.map(str::to_owned));
                }
            }
            relations.retain(|_, followees| !followees.is_empty());
            plan.relations = Some(relations);
        }
        if let Some(path) = &args.files.auto_subscribe_file {
            load_auto_subscribe_file(path)?;
            plan.auto_subscribe = Some(Sections::split(&read(path)?, None));
        }
        Ok(plan)
    }

    fn print_summary(&self) {
        if let Some(users) = &self.users {
            println!("users: {} password(s) set", users.len());
        }
        if let Some(acl) = &self.acl {
            println!(
                "acl: {} shared line(s), {} user list(s)",
                acl.shared.len(),
                acl.users.len()
            );
        }
        if let Some(relations) = &self.relations {
            println!("relations: {} follow set(s)", relations.len());
        }
        if let Some(auto) = &self.auto_subscribe {
            println!(
                "auto-subscribe: {} shared line(s), {} user list(s)",
                auto.shared.len(),
                auto.users.len()
            );
        }
        println!("published `*` on {}", keys::INVALIDATE);
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn connect(url: Option<&str>) -> anyhow::Result<Connection> {
    let Some(url) = url else {
        bail!("no Redis given: use --redis-url URL (or `[redis] url` in the --config file)");
    };
    let client = Client::open(url).context("invalid Redis URL")?;
    let connection = client
        .get_connection_with_timeout(TIMEOUT)
        .with_context(|| {
            format!(
                "connecting to Redis at {}",
                client.get_connection_info().addr()
            )
        })?;
    connection.set_read_timeout(Some(TIMEOUT))?;
    connection.set_write_timeout(Some(TIMEOUT))?;
    Ok(connection)
}

fn has_password(redis: &mut Connection, user: &str) -> anyhow::Result<bool> {
    redis::cmd("HEXISTS")
        .arg(keys::user(user))
        .arg(keys::PASSWORD)
        .query(redis)
        .context("looking the user up")
}

fn new_hash(password: Option<&str>, iterations: u32) -> anyhow::Result<String> {
    let password = match password {
        Some("") => bail!("empty password"),
        Some(password) => password.to_owned(),
        None => read_new_password()?,
    };
    Ok(PasswordHash::new_pbkdf2(password.as_bytes(), iterations)?.to_string())
}

/// Every key that starts with `prefix` (SCAN, so a large database is not blocked).
fn scan(redis: &mut Connection, prefix: &str) -> anyhow::Result<Vec<String>> {
    let pattern = format!("{}*", escape_glob(prefix));
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(redis)
            .context("listing keys")?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// `text` as a literal in a SCAN MATCH pattern.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_sections_keep_patterns_shared() {
        let text = "\
# comment
topic read public/#
user t1.qq.com
topic write /%F/chat
pattern read /%u/chat

user x y
topic deny a
user t1.qq.com
topic b
";
        let sections = Sections::split(text, Some("pattern"));
        assert_eq!(
            sections.shared,
            ["topic read public/#", "pattern read /%u/chat"]
        );
        assert_eq!(
            sections.users.get("t1.qq.com").map(Vec::as_slice),
            Some(&["topic write /%F/chat".to_owned(), "topic b".to_owned()][..])
        );
        assert_eq!(
            sections.users.get("x y").map(Vec::as_slice),
            Some(&["topic deny a".to_owned()][..])
        );
    }

    #[test]
    fn auto_subscribe_sections() {
        let sections = Sections::split("/%u/chat 1\nuser a\nops/x 2\n", None);
        assert_eq!(sections.shared, ["/%u/chat 1"]);
        assert_eq!(sections.users.len(), 1);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("shardmq:user:"), "shardmq:user:");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn debug_hides_passwords() {
        let action = UsersAction::Add {
            user: "u".into(),
            password: Some("secret".into()),
        };
        let shown = format!("{action:?}");
        assert!(
            !shown.contains("secret") && shown.contains("hidden"),
            "{shown}"
        );
    }
}
