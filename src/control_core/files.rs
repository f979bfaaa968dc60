//! The embedded backend: a Mosquitto `password_file` and `acl_file`, plus the relations and
//! auto-subscribe files ([`AccessFiles`]), read into memory. It needs no external service and is
//! the default. A reload (SIGHUP) reads every file again; one that does not parse leaves all the
//! previous data in force.

use anyhow::Context;
use shardmq_codec::QoS;
use shardmq_shard::acl::SessionAcl;
use tracing::{info, warn};

use super::{Backend, Verdict};
use crate::access::{AclRules, AutoSubscribe, Relations};
use crate::auth::acl_file::load_acl_file;
use crate::auth::auto_subscribe_file::load_auto_subscribe_file;
use crate::auth::password::PasswordHash;
use crate::auth::password_file::PasswordFile;
use crate::auth::relations_file::load_relations_file;
use crate::auth::MAX_USERNAME_LEN;
use crate::config::AccessFiles;

#[derive(Debug, Default)]
struct Data {
    passwords: Option<PasswordFile>,
    rules: Option<AclRules>,
    relations: Relations,
    auto_subscribe: AutoSubscribe,
}

impl Data {
    fn log_summary(&self) {
        let Some(passwords) = &self.passwords else {
            return;
        };
        if passwords.is_empty() {
            warn!(file = %passwords.path().display(), "the password file has no users: every login fails");
        }
        let legacy = passwords
            .users()
            .filter(|user| passwords.get(user).is_some_and(PasswordHash::is_legacy))
            .count();
        for user in passwords.users() {
            if user.len() > MAX_USERNAME_LEN {
                warn!(
                    file = %passwords.path().display(),
                    user = %user.get(..64).unwrap_or(user),
                    "user name longer than {MAX_USERNAME_LEN} bytes: this user cannot log in"
                );
            }
            if let Some(Err(cost)) = passwords.get(user).map(PasswordHash::check_cost) {
                // Loaded so that the other users can log in; this one cannot until its hash is
                // replaced (`shardmq passwd`).
                warn!(
                    file = %passwords.path().display(),
                    %user,
                    error = %cost,
                    "password hash too costly to verify: this user cannot log in"
                );
            }
        }
        if legacy > 0 {
            // Legacy salted MD5 and $6$ hashes are verified for migration; `shardmq passwd`
            // rewrites them as PBKDF2-SHA512.
            warn!(file = %passwords.path().display(), legacy, "users with legacy password hashes");
        }
        info!(file = %passwords.path().display(), users = passwords.len(), "password file loaded");
    }

    /// Reads every configured file; an error names the key, the file and the line.
    fn load(files: &AccessFiles) -> anyhow::Result<Data> {
        Ok(Data {
            passwords: files
                .password_file
                .as_deref()
                .map(PasswordFile::load)
                .transpose()
                .context("password_file")?,
            rules: files
                .acl_file
                .as_deref()
                .map(load_acl_file)
                .transpose()
                .context("acl_file")?,
            relations: files
                .relations_file
                .as_deref()
                .map(load_relations_file)
                .transpose()
                .context("relations_file")?
                .unwrap_or_default(),
            auto_subscribe: files
                .auto_subscribe_file
                .as_deref()
                .map(load_auto_subscribe_file)
                .transpose()
                .context("auto_subscribe_file")?
                .unwrap_or_default(),
        })
    }
}

/// The embedded-file backend.
#[derive(Debug)]
pub struct FileBackend {
    files: AccessFiles,
    allow_anonymous: bool,
    data: Data,
}

impl FileBackend {
    /// Reads every configured file; an error names the file and line.
    pub fn load(files: AccessFiles, allow_anonymous: bool) -> anyhow::Result<FileBackend> {
        let data = Data::load(&files)?;
        data.log_summary();
        Ok(FileBackend {
            files,
            allow_anonymous,
            data,
        })
    }

    fn relations_of(&self, username: Option<&str>) -> (Vec<&str>, Vec<&str>) {
        match username {
            Some(name) => (
                self.data.relations.follows(name),
                self.data.relations.friends(name),
            ),
            None => (Vec::new(), Vec::new()),
        }
    }
}

impl Backend for FileBackend {
    fn authenticate(&mut self, username: Option<&str>, password: Option<&[u8]>) -> Verdict {
        match (&self.data.passwords, username) {
            // Anonymous: no user name at all.
            (_, None) if self.allow_anonymous => Verdict::Allowed,
            (_, None) => Verdict::NotAuthorized,
            // A user name with no password file to check it against is taken as given, as
            // Mosquitto does when only allow_anonymous applies.
            (None, Some(_)) if self.allow_anonymous => Verdict::Allowed,
            (None, Some(_)) => Verdict::NotAuthorized,
            (Some(passwords), Some(name)) => match password {
                Some(password) if passwords.verify(name, password) => Verdict::Allowed,
                _ if passwords.get(name).is_some() => Verdict::BadPassword,
                _ => Verdict::UnknownUser,
            },
        }
    }

    fn session_acl(&mut self, username: Option<&str>, client_id: &str) -> Option<SessionAcl> {
        let rules = self.data.rules.as_ref()?;
        let (follows, friends) = self.relations_of(username);
        Some(rules.compile(username, client_id, &follows, &friends))
    }

    fn auto_subscribe(&mut self, username: Option<&str>, client_id: &str) -> Vec<(String, QoS)> {
        let (follows, friends) = self.relations_of(username);
        self.data
            .auto_subscribe
            .expand(username, client_id, &follows, &friends)
    }

    fn reload(&mut self) -> anyhow::Result<()> {
        self.data = Data::load(&self.files)?;
        self.data.log_summary();
        Ok(())
    }
}
