//! Auto-subscriptions: filter templates with a QoS, subscribed for a client on a successful
//! CONNECT (each one only if the session's ACL allows it), and their expansion for one client.

use hashbrown::HashMap;
use shardmq_codec::QoS;

use super::template::{Expansion, FilterTemplate, Subject};

/// One auto-subscribe line: a filter template and the QoS to subscribe with.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AutoSubscription {
    filter: FilterTemplate,
    qos: QoS,
}

impl AutoSubscription {
    /// Subscribe to `filter` with `qos`.
    pub fn new(filter: FilterTemplate, qos: QoS) -> AutoSubscription {
        AutoSubscription { filter, qos }
    }
}

/// The subscriptions made for a client on a successful CONNECT: lines for everyone, and lines
/// per user. Immutable once built; share it behind an `Arc`.
#[derive(Clone, Debug, Default)]
pub struct AutoSubscribe {
    everyone: Vec<AutoSubscription>,
    users: HashMap<Box<str>, Vec<AutoSubscription>>,
}

impl AutoSubscribe {
    /// No auto-subscriptions.
    pub fn new() -> AutoSubscribe {
        AutoSubscribe::default()
    }

    /// Adds a line that applies to every client.
    pub fn push_everyone(&mut self, subscription: AutoSubscription) {
        self.everyone.push(subscription);
    }

    /// Adds a line that applies to `username` only.
    pub fn push_user(&mut self, username: &str, subscription: AutoSubscription) {
        self.users
            .entry_ref(username)
            .or_default()
            .push(subscription);
    }

    /// The lines for every client.
    pub fn everyone(&self) -> &[AutoSubscription] {
        &self.everyone
    }

    /// The lines for `username` only (empty if none).
    pub fn user(&self, username: &str) -> &[AutoSubscription] {
        self.users.get(username).map_or(&[], Vec::as_slice)
    }

    /// The concrete `(filter, qos)` subscriptions for a client: the lines for everyone, then the
    /// user's own, with substitutions expanded (a `%f`/`%F` line gives one filter per related
    /// user). An anonymous client (`username` `None`) gets no line that uses `%u`; values that
    /// are empty or contain `+#/` fill nothing. A filter produced twice is subscribed once, with
    /// the highest QoS asked for, at its first position.
    ///
    /// These are not checked against the ACL here: the shard subscribes only the filters the
    /// session's ACL allows.
    pub fn expand(
        &self,
        username: Option<&str>,
        client_id: &str,
        follows: &[&str],
        friends: &[&str],
    ) -> Vec<(String, QoS)> {
        let subject = Subject {
            username,
            client_id,
            follows,
            friends,
        };
        let own = username.map_or(&[][..], |name| self.user(name));
        let mut out: Vec<(String, QoS)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for line in self.everyone.iter().chain(own) {
            line.filter.expand(
                &subject,
                Expansion::Allow,
                &mut |filter| match index.get(filter) {
                    Some(&at) => out[at].1 = out[at].1.max(line.qos),
                    None => {
                        index.insert(filter.to_owned(), out.len());
                        out.push((filter.to_owned(), line.qos));
                    }
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> FilterTemplate {
        FilterTemplate::parse(text).expect("valid template")
    }

    #[test]
    fn auto_subscribe_expansion() {
        let mut auto = AutoSubscribe::new();
        auto.push_everyone(AutoSubscription::new(
            template("notices/all"),
            QoS::AtMostOnce,
        ));
        auto.push_everyone(AutoSubscription::new(
            template("/%u/chat"),
            QoS::AtLeastOnce,
        ));
        auto.push_everyone(AutoSubscription::new(
            template("user/%F/presence/+"),
            QoS::AtMostOnce,
        ));
        auto.push_user(
            "ann",
            AutoSubscription::new(template("notices/all"), QoS::ExactlyOnce),
        );
        auto.push_user(
            "ann",
            AutoSubscription::new(template("follow/%f/news"), QoS::AtMostOnce),
        );
        let got = auto.expand(Some("ann"), "c1", &["bob", "cat", "a/b"], &["bob", "+"]);
        let want: Vec<(String, QoS)> = [
            ("notices/all", QoS::ExactlyOnce),
            ("/ann/chat", QoS::AtLeastOnce),
            ("user/bob/presence/+", QoS::AtMostOnce),
            ("follow/bob/news", QoS::AtMostOnce),
            ("follow/cat/news", QoS::AtMostOnce),
        ]
        .into_iter()
        .map(|(f, q)| (f.to_string(), q))
        .collect();
        assert_eq!(got, want);
        let anon = auto.expand(None, "c1", &[], &[]);
        assert_eq!(anon, [("notices/all".to_string(), QoS::AtMostOnce)]);
        let bad_user = auto.expand(Some("a/b"), "c1", &[], &[]);
        assert_eq!(bad_user, [("notices/all".to_string(), QoS::AtMostOnce)]);
    }
}
