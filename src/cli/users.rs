//! `shardmq users`: manages the users the Redis backend reads (the key layout is documented in
//! [`crate::control_core::redis`]).
//!
//! ```text
//! shardmq users [--redis-url URL] [-I N] add <user> [<password>]
//! shardmq users [--redis-url URL] [-I N] passwd <user> [<password>]
//! shardmq users [--redis-url URL] delete <user>
//! shardmq users [--redis-url URL] list
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

use std::fmt;

use anyhow::{bail, Context};
use redis::Connection;

use super::passwd::{read_new_password, validate_username};
use super::redis::{connect, scan};
use crate::auth::password::{PasswordHash, DEFAULT_ITERATIONS};
use crate::config::Settings;
use crate::control_core::redis::keys;

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

/// Runs `shardmq users`; the Redis URL defaults to the configuration's.
pub fn run(args: &UsersArgs, settings: &Settings) -> anyhow::Result<()> {
    let iterations = args.iterations.unwrap_or(DEFAULT_ITERATIONS);
    if let UsersAction::Add { user, .. }
    | UsersAction::Passwd { user, .. }
    | UsersAction::Delete { user } = &args.action
    {
        validate_username(user)?;
    }
    let mut redis = connect(args.redis_url.as_deref().or(settings.redis.url.as_deref()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
