//! `shardmq import`: loads the password, ACL, relations and auto-subscribe files into the Redis
//! backend (the key layout is documented in [`crate::control_core::redis`]).
//!
//! ```text
//! shardmq import [--redis-url URL] [--password-file F] [--acl-file F] [--relations-file F]
//!                [--auto-subscribe-file F]
//! ```
//!
//! The URL defaults to the configuration's `[redis] url`. Every file is checked with the broker's
//! own parsers before anything is written, so a bad file is reported with its line and Redis is
//! left as it was. It then writes in one `MULTI`/`EXEC` transaction and publishes `*`:
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
use std::path::Path;

use anyhow::{bail, Context};

use super::redis::{connect, scan};
use crate::auth::acl_file::load_acl_file;
use crate::auth::auto_subscribe_file::load_auto_subscribe_file;
use crate::auth::password_file::PasswordFile;
use crate::auth::relations_file::load_relations_file;
use crate::config::{AccessFiles, Settings};
use crate::control_core::redis::keys;

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

/// Runs `shardmq import`; the Redis URL defaults to the configuration's.
pub fn run(args: &ImportArgs, settings: &Settings) -> anyhow::Result<()> {
    if args.files.is_empty() {
        bail!("nothing to import: give at least one of --password-file, --acl-file, --relations-file, --auto-subscribe-file");
    }
    let plan = ImportPlan::read(args)?;
    let mut redis = connect(args.redis_url.as_deref().or(settings.redis.url.as_deref()))?;
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

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
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
}
