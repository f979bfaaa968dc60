//! Topic filter templates: a filter whose levels may be the substitutions `%u` (username), `%c`
//! (client id), `%f` (each followee) or `%F` (each friend), and their expansion into concrete
//! filters for one client (the rules in the module doc of [`crate::access`]).
//!
//! A template is parsed once, when its file or Redis list is read, into levels, so expanding it
//! for a client is a walk over those levels with no parsing: it runs at every CONNECT.

/// Why a topic filter template was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// Not a valid MQTT topic filter (empty, `#` not last, `+`/`#` inside a level, U+0000).
    #[error("invalid topic filter")]
    InvalidFilter,
    /// More than one `%f`/`%F` level: the rule would expand to a cross product of users.
    #[error("more than one %f/%F substitution in one filter")]
    MultipleRelations,
}

/// One level of a [`FilterTemplate`].
#[derive(Clone, Debug, Eq, PartialEq)]
enum Level {
    Literal(Box<str>),
    SingleWildcard,
    MultiWildcard,
    Username,
    ClientId,
    Followee,
    Friend,
}

/// Which relation a template's `%f` / `%F` level draws from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Relation {
    Followee,
    Friend,
}

/// How [`FilterTemplate::expand`] treats a substitution value that is empty or holds `+#/`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Expansion {
    /// Allowing rules and auto-subscriptions: such a value does not fill the template.
    Allow,
    /// Deny rules: the value is used verbatim, which only widens the denial.
    Deny,
}

/// A topic filter whose levels may be the substitutions `%u` (username), `%c` (client id),
/// `%f` (each followee) or `%F` (each friend).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct FilterTemplate {
    text: Box<str>,
    levels: Box<[Level]>,
    relation: Option<Relation>,
    uses_username: bool,
    uses_client_id: bool,
}

impl FilterTemplate {
    /// Parses `text`: a valid topic filter in which a level that is exactly `%u`, `%c`, `%f` or
    /// `%F` is a substitution, with at most one `%f`/`%F` level.
    pub fn parse(text: &str) -> Result<FilterTemplate, TemplateError> {
        if !shardmq_codec::topic::valid_filter(text) {
            return Err(TemplateError::InvalidFilter);
        }
        let mut relation = None;
        let mut uses_username = false;
        let mut uses_client_id = false;
        let mut levels = Vec::new();
        for level in text.split('/') {
            let level = match level {
                "+" => Level::SingleWildcard,
                "#" => Level::MultiWildcard,
                "%u" => {
                    uses_username = true;
                    Level::Username
                }
                "%c" => {
                    uses_client_id = true;
                    Level::ClientId
                }
                "%f" | "%F" => {
                    if relation.is_some() {
                        return Err(TemplateError::MultipleRelations);
                    }
                    if level == "%f" {
                        relation = Some(Relation::Followee);
                        Level::Followee
                    } else {
                        relation = Some(Relation::Friend);
                        Level::Friend
                    }
                }
                literal => Level::Literal(literal.into()),
            };
            levels.push(level);
        }
        Ok(FilterTemplate {
            text: text.into(),
            levels: levels.into_boxed_slice(),
            relation,
            uses_username,
            uses_client_id,
        })
    }

    /// Calls `out` with each concrete filter this template stands for, for `subject`.
    pub fn expand(&self, subject: &Subject<'_>, mode: Expansion, out: &mut dyn FnMut(&str)) {
        let fills = |value: &str| mode == Expansion::Deny || usable(value);
        let username = match (self.uses_username, subject.username) {
            (false, _) => "",
            (true, None) => return,
            (true, Some(name)) if fills(name) => name,
            (true, Some(_)) => return,
        };
        let client_id = match self.uses_client_id {
            false => "",
            true if fills(subject.client_id) => subject.client_id,
            true => return,
        };
        let related: &[&str] = match self.relation {
            // One pass with no related user.
            None => &[""],
            Some(Relation::Followee) => subject.follows,
            Some(Relation::Friend) => subject.friends,
        };
        // One buffer for every related user: the caller copies what it keeps.
        let mut filter = String::new();
        for &name in related {
            if self.relation.is_some() && !fills(name) {
                continue;
            }
            filter.clear();
            for (i, level) in self.levels.iter().enumerate() {
                if i > 0 {
                    filter.push('/');
                }
                filter.push_str(match level {
                    Level::Literal(text) => text,
                    Level::SingleWildcard => "+",
                    Level::MultiWildcard => "#",
                    Level::Username => username,
                    Level::ClientId => client_id,
                    Level::Followee | Level::Friend => name,
                });
            }
            out(&filter);
        }
    }
}

/// True if `value` may fill a substitution level of an allowing rule: it is one non-empty level
/// without wildcards, so the expanded filter matches exactly what the template says, and it does
/// not start with `$`, so it cannot reach the broker's `$` topics.
fn usable(value: &str) -> bool {
    !value.is_empty() && !value.contains(['+', '#', '/']) && !value.starts_with('$')
}

/// The identity a template is expanded for.
pub struct Subject<'a> {
    /// The user name; `None` for an anonymous client.
    pub username: Option<&'a str>,
    /// The client id.
    pub client_id: &'a str,
    /// The users it follows (for `%f`).
    pub follows: &'a [&'a str],
    /// Its friends: the users it follows who follow it back (for `%F`).
    pub friends: &'a [&'a str],
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn template(text: &str) -> FilterTemplate {
        FilterTemplate::parse(text).expect("valid template")
    }

    #[test]
    fn template_parsing() {
        assert!(FilterTemplate::parse("/%u/chat").is_ok());
        assert!(FilterTemplate::parse("a/+/#").is_ok());
        assert_eq!(FilterTemplate::parse(""), Err(TemplateError::InvalidFilter));
        assert_eq!(
            FilterTemplate::parse("a/#/b"),
            Err(TemplateError::InvalidFilter)
        );
        assert_eq!(
            FilterTemplate::parse("a+/b"),
            Err(TemplateError::InvalidFilter)
        );
        assert_eq!(
            FilterTemplate::parse("%f/%F"),
            Err(TemplateError::MultipleRelations)
        );
        assert_eq!(
            FilterTemplate::parse("%f/x/%f"),
            Err(TemplateError::MultipleRelations)
        );
    }

    fn expanded(text: &str, subject: &Subject<'_>, mode: Expansion) -> Vec<String> {
        let mut out = Vec::new();
        template(text).expand(subject, mode, &mut |filter| out.push(filter.to_owned()));
        out
    }

    #[test]
    fn expands_each_substitution() {
        let subject = Subject {
            username: Some("ann"),
            client_id: "phone",
            follows: &["bob", "cat"],
            friends: &["bob"],
        };
        let allow = |text| expanded(text, &subject, Expansion::Allow);
        assert_eq!(allow("/%u/chat"), ["/ann/chat"]);
        assert_eq!(allow("devices/%c/+"), ["devices/phone/+"]);
        assert_eq!(
            allow("follow/%f/news"),
            ["follow/bob/news", "follow/cat/news"]
        );
        assert_eq!(allow("user/%F/%u/#"), ["user/bob/ann/#"]);
        // Not a whole level: literal text, as in Mosquitto.
        assert_eq!(allow("a%u/x"), ["a%u/x"]);
        assert_eq!(allow("%username"), ["%username"]);
        let anonymous = Subject {
            username: None,
            ..subject
        };
        assert!(expanded("/%u/chat", &anonymous, Expansion::Allow).is_empty());
        assert!(expanded("/%u/chat", &anonymous, Expansion::Deny).is_empty());
    }

    /// The expansion written the obvious way: text substitution, level by level.
    fn naive_expand(text: &str, subject: &Subject<'_>, mode: Expansion) -> Vec<String> {
        let fills = |value: &str| {
            mode == Expansion::Deny || (!value.is_empty() && !value.contains(['+', '#', '/']))
        };
        let levels: Vec<&str> = text.split('/').collect();
        let related: Vec<&str> = if levels.contains(&"%f") {
            subject.follows.to_vec()
        } else if levels.contains(&"%F") {
            subject.friends.to_vec()
        } else {
            vec![""]
        };
        let mut out = Vec::new();
        'users: for name in related {
            let mut filter = Vec::new();
            for level in &levels {
                let value = match (*level, subject.username) {
                    ("%u", Some(username)) => username,
                    // An anonymous client fills no `%u`, not even in a deny rule.
                    ("%u", None) => continue 'users,
                    ("%c", _) => subject.client_id,
                    ("%f" | "%F", _) => name,
                    (literal, _) => {
                        filter.push(literal);
                        continue;
                    }
                };
                if !fills(value) {
                    continue 'users;
                }
                filter.push(value);
            }
            out.push(filter.join("/"));
        }
        out
    }

    const NAMES: &[&str] = &["ann", "bob", "phone", "a/b", "+", "#", ""];

    proptest! {
        #[test]
        fn expansion_agrees_with_text_substitution(
            levels in prop::collection::vec(
                prop::sample::select(vec!["a", "", "+", "%u", "%c", "%f", "%F", "%x"]),
                1..5,
            ),
            multi in any::<bool>(),
            username in prop::option::of(prop::sample::select(NAMES)),
            client_id in prop::sample::select(NAMES),
            follows in prop::collection::vec(prop::sample::select(NAMES), 0..4),
            friends in prop::collection::vec(prop::sample::select(NAMES), 0..4),
            deny in any::<bool>(),
        ) {
            let mut text = levels.join("/");
            if multi {
                text.push_str("/#");
            }
            // Generated templates may hold two relation levels; those are refused.
            let Ok(template) = FilterTemplate::parse(&text) else {
                return Ok(());
            };
            let subject = Subject { username, client_id, follows: &follows, friends: &friends };
            let mode = if deny { Expansion::Deny } else { Expansion::Allow };
            let mut got = Vec::new();
            template.expand(&subject, mode, &mut |filter| got.push(filter.to_owned()));
            prop_assert_eq!(got, naive_expand(&text, &subject, mode));
        }
    }
}
