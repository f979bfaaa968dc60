//! From a [`Scenario`] to clients. Every workload becomes a list of groups over one global client
//! index (`0..total`): a group is a contiguous index range whose clients share their settings and
//! role (publish to a topic template, subscribe to filter templates, or stay idle). Publishers
//! also get a dense *rank* (`0..publishers`) that travels in each payload.
//!
//! The plan is a pure function of the scenario, so every worker process computes the same one and
//! only runs the clients of its slice. The plan also answers which publishers each subscriber
//! should hear from — by matching the publishers' topics against its filters once, at start — so
//! a run can count lost and unexpected deliveries exactly.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, ensure};
use shardmq_codec::{topic, Protocol, QoS};

use crate::scenario::{Group, Scenario, Workload};

/// A string with `%i` (the client's index in its group) and `%g` (its global index) in it;
/// `%%` is a literal `%`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Template(Vec<Piece>);

#[derive(Clone, Debug, Eq, PartialEq)]
enum Piece {
    Text(String),
    Index,
    Global,
}

impl Template {
    pub(crate) fn parse(text: &str) -> Self {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let piece = match (c, chars.peek()) {
                ('%', Some('i')) => Piece::Index,
                ('%', Some('g')) => Piece::Global,
                ('%', Some('%')) => {
                    chars.next();
                    literal.push('%');
                    continue;
                }
                _ => {
                    literal.push(c);
                    continue;
                }
            };
            chars.next();
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Self(pieces)
    }

    /// True when every client renders the same string.
    pub(crate) fn is_constant(&self) -> bool {
        self.0.iter().all(|piece| matches!(piece, Piece::Text(_)))
    }

    fn uses_global(&self) -> bool {
        self.0.contains(&Piece::Global)
    }

    /// Appends the string for the client at `index` in its group and `global` overall.
    pub(crate) fn render_into(&self, index: u32, global: u32, out: &mut String) {
        use std::fmt::Write;
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                // Writing to a String cannot fail.
                Piece::Index => {
                    let _ = write!(out, "{index}");
                }
                Piece::Global => {
                    let _ = write!(out, "{global}");
                }
            }
        }
    }

    pub(crate) fn render(&self, index: u32, global: u32) -> String {
        let mut out = String::new();
        self.render_into(index, global, &mut out);
        out
    }
}

/// What a publishing group sends.
#[derive(Clone, Debug)]
pub(crate) struct PublishPlan {
    pub topic: Template,
    /// Per publisher; 0 is unlimited (bounded by the publish duration).
    pub messages: u64,
    /// Per publisher per second; 0 is unlimited.
    pub rate: f64,
    pub payload: usize,
    pub retain: bool,
    /// Rank of the group's first client.
    pub first_rank: u32,
}

/// One group of clients with the same settings and role.
#[derive(Clone, Debug)]
pub(crate) struct GroupPlan {
    pub name: String,
    /// Global index of the first client.
    pub start: u32,
    pub count: u32,
    pub client_id: Template,
    pub username: Option<Template>,
    pub password: Option<Template>,
    pub keepalive: u16,
    pub clean: bool,
    /// QoS of this group's publications and subscriptions.
    pub qos: QoS,
    pub publish: Option<PublishPlan>,
    pub subscribe: Vec<Template>,
    /// The group subscribes as members of shared subscription groups: each message reaches one
    /// of its clients, so the group as a whole expects each message once.
    pub shared: bool,
}

/// Every client of a run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub groups: Vec<GroupPlan>,
    pub total: u32,
    pub publishers: u32,
    pub subscribers: u32,
    pub protocol: Protocol,
}

impl Plan {
    pub(crate) fn new(scenario: &Scenario) -> anyhow::Result<Self> {
        scenario.validate()?;
        let publishing = |name: &str, count: u32, topic: &str| Group {
            publish: Some(topic.to_owned()),
            ..Group::idle(name, count)
        };
        let subscribing = |name: &str, count: u32, filter: &str| Group {
            subscribe: vec![filter.to_owned()],
            ..Group::idle(name, count)
        };
        let groups: Vec<Group> = match &scenario.workload {
            Workload::Conn(conn) => vec![Group::idle("conn", conn.connections)],
            Workload::Fanout(fanout) => {
                let subscribers = fanout
                    .subscribers
                    .unwrap_or(fanout.connections - fanout.publishers);
                let idle = fanout.connections - fanout.publishers - subscribers;
                let mut groups = vec![publishing("publishers", fanout.publishers, &fanout.topic)];
                if subscribers > 0 {
                    groups.push(subscribing("subscribers", subscribers, &fanout.topic));
                }
                if idle > 0 {
                    groups.push(Group::idle("idle", idle));
                }
                groups
            }
            Workload::Fanin(fanin) => {
                let filter = match &fanin.shared_group {
                    Some(group) => format!("$share/{group}/{}", fanin.filter),
                    None => fanin.filter.clone(),
                };
                vec![
                    publishing("publishers", fanin.publishers, &fanin.topic),
                    subscribing("subscribers", fanin.subscribers, &filter),
                ]
            }
            Workload::Pairs(pairs) => vec![
                publishing("publishers", pairs.pairs, &pairs.topic),
                subscribing("subscribers", pairs.pairs, &pairs.topic),
            ],
            Workload::Mixed(groups) => groups.clone(),
        };
        let protocol = match scenario.broker.protocol {
            3 => Protocol::V310,
            4 => Protocol::V311,
            _ => Protocol::V500,
        };

        let mut plan = Plan {
            groups: Vec::new(),
            total: 0,
            publishers: 0,
            subscribers: 0,
            protocol,
        };
        for group in &groups {
            let group = plan.group_plan(scenario, group)?;
            plan.total += group.count;
            if group.publish.is_some() {
                plan.publishers += group.count;
            }
            if !group.subscribe.is_empty() {
                plan.subscribers += group.count;
            }
            plan.groups.push(group);
        }
        plan.check_client_ids()?;
        Ok(plan)
    }

    fn group_plan(&self, scenario: &Scenario, group: &Group) -> anyhow::Result<GroupPlan> {
        let client = &scenario.client;
        let publish = &scenario.publish;
        let qos = group.qos.unwrap_or(publish.qos);
        let name = &group.name;
        let publish_plan = match &group.publish {
            Some(topic) => {
                let template = Template::parse(topic);
                ensure!(
                    topic::valid_name(&template.render(0, self.total)),
                    "group {name:?}: {topic:?} is not a valid topic name"
                );
                Some(PublishPlan {
                    topic: template,
                    messages: group.messages.unwrap_or(publish.messages),
                    rate: group.rate.unwrap_or(publish.rate),
                    payload: group.payload.unwrap_or(publish.payload),
                    retain: group.retain.unwrap_or(publish.retain),
                    first_rank: self.publishers,
                })
            }
            None => None,
        };
        let mut subscribe = Vec::new();
        for filter in &group.subscribe {
            let template = Template::parse(filter);
            ensure!(
                topic::valid_filter(matched_filter(&template.render(0, self.total))),
                "group {name:?}: {filter:?} is not a valid topic filter"
            );
            subscribe.push(template);
        }
        let shared = group
            .subscribe
            .iter()
            .any(|filter| matched_filter(filter).len() != filter.len());
        ensure!(
            !shared || group.subscribe.len() == 1,
            "group {name:?}: a shared subscription must be the group's only filter"
        );
        let username = group.username.as_ref().or(client.username.as_ref());
        let password = group.password.as_ref().or(client.password.as_ref());
        ensure!(
            password.is_none() || username.is_some() || scenario.broker.protocol == 5,
            "group {name:?}: a password needs a user name before MQTT 5 [MQTT-3.1.2-22]"
        );
        let client_id = Template::parse(group.client_id.as_deref().unwrap_or(&client.client_id));
        ensure!(
            group.count == 1 || !client_id.is_constant(),
            "group {name:?}: the client id template needs %i or %g, or every client takes over the same session"
        );
        Ok(GroupPlan {
            name: name.clone(),
            start: self.total,
            count: group.count,
            client_id,
            username: username.map(|t| Template::parse(t)),
            password: password.map(|t| Template::parse(t)),
            keepalive: group.keepalive.unwrap_or(client.keepalive),
            clean: group.clean.unwrap_or(client.clean),
            qos: QoS::from_u8(qos).unwrap_or_default(),
            publish: publish_plan,
            subscribe,
            shared,
        })
    }

    /// Two groups with the same `%i`-only client id template would share ids.
    fn check_client_ids(&self) -> anyhow::Result<()> {
        for (n, group) in self.groups.iter().enumerate() {
            if group.client_id.uses_global() {
                continue;
            }
            if let Some(other) = self.groups[..n]
                .iter()
                .find(|g| g.client_id == group.client_id)
            {
                bail!(
                    "groups {:?} and {:?} use the same client id template without %g",
                    other.name,
                    group.name
                );
            }
        }
        Ok(())
    }

    /// The group of client `global` and the client's index in it.
    pub(crate) fn locate(&self, global: u32) -> (usize, u32) {
        let n = self
            .groups
            .partition_point(|group| group.start + group.count <= global);
        (n, global - self.groups[n].start)
    }

    /// Every publisher's rank and topic, group by group.
    fn for_each_publisher(&self, mut f: impl FnMut(u32, &str)) {
        let mut topic = String::new();
        for group in &self.groups {
            let Some(publish) = &group.publish else {
                continue;
            };
            for index in 0..group.count {
                topic.clear();
                publish
                    .topic
                    .render_into(index, group.start + index, &mut topic);
                f(publish.first_rank + index, &topic);
            }
        }
    }
}

/// The topic filter a subscription matches with: the filter of a shared subscription
/// (`$share/<group>/<filter>`, `$queue/<filter>`), the whole of any other.
pub(crate) fn matched_filter(filter: &str) -> &str {
    if let Some(rest) = filter.strip_prefix("$share/") {
        rest.split_once('/').map_or(filter, |(_, filter)| filter)
    } else {
        filter.strip_prefix("$queue/").unwrap_or(filter)
    }
}

/// Which publishers each subscriber should hear from.
///
/// Filters without `%i`/`%g` are the same for a whole group: they are matched against every
/// publisher's topic once and the result is shared. A per-client filter without wildcards is looked
/// up in a topic index; a per-client filter with wildcards is matched against every publisher, which
/// is refused when that would take too long.
pub(crate) struct Expectations<'a> {
    plan: &'a Plan,
    topics: Option<HashMap<String, Vec<u32>>>,
    shared: HashMap<usize, Arc<[u32]>>,
    budget: u64,
}

/// Above this many topic matches a worker refuses to compute expectations.
const MATCH_BUDGET: u64 = 200_000_000;

impl<'a> Expectations<'a> {
    pub(crate) fn new(plan: &'a Plan) -> Self {
        Self {
            plan,
            topics: None,
            shared: HashMap::new(),
            budget: MATCH_BUDGET,
        }
    }

    /// The sorted ranks of the publishers whose messages client `global` (a subscriber) expects.
    pub(crate) fn of(&mut self, global: u32) -> anyhow::Result<Arc<[u32]>> {
        let (n, index) = self.plan.locate(global);
        let group = &self.plan.groups[n];
        if group.subscribe.iter().all(Template::is_constant) {
            if let Some(shared) = self.shared.get(&n) {
                return Ok(shared.clone());
            }
        }
        let mut ranks = Vec::new();
        for filter in &group.subscribe {
            let filter = filter.render(index, global);
            let filter = matched_filter(&filter);
            if topic::has_wildcards(filter) {
                self.budget = self.budget.saturating_sub(self.plan.publishers.into());
                ensure!(
                    self.budget > 0,
                    "too many subscriber x publisher pairs to match wildcard filters with %i/%g \
                     against every publisher"
                );
                self.plan.for_each_publisher(|rank, topic| {
                    if topic::matches(topic, filter) {
                        ranks.push(rank);
                    }
                });
            } else {
                let plan = self.plan;
                let topics = self.topics.get_or_insert_with(|| {
                    let mut topics: HashMap<String, Vec<u32>> = HashMap::new();
                    plan.for_each_publisher(|rank, topic| {
                        topics.entry(topic.to_owned()).or_default().push(rank);
                    });
                    topics
                });
                ranks.extend(topics.get(filter).into_iter().flatten());
            }
        }
        ranks.sort_unstable();
        ranks.dedup();
        let ranks: Arc<[u32]> = ranks.into();
        if group.subscribe.iter().all(Template::is_constant) {
            self.shared.insert(n, ranks.clone());
        }
        Ok(ranks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Fanin, Fanout, Pairs};

    #[test]
    fn templates() {
        let t = Template::parse("user-%i/%g/100%%/%x");
        assert_eq!(t.render(3, 42), "user-3/42/100%/%x");
        assert!(!t.is_constant());
        assert!(Template::parse("plain/topic").is_constant());
        assert_eq!(Template::parse("%i%i").render(7, 0), "77");
    }

    #[test]
    fn fanout_groups_and_locate() {
        let scenario = Scenario::new(
            "f",
            Workload::Fanout(Fanout {
                connections: 10,
                subscribers: Some(6),
                publishers: 2,
                topic: "t".into(),
            }),
        );
        let plan = Plan::new(&scenario).unwrap();
        let names: Vec<_> = plan
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.count))
            .collect();
        assert_eq!(names, [("publishers", 2), ("subscribers", 6), ("idle", 2)]);
        assert_eq!((plan.total, plan.publishers, plan.subscribers), (10, 2, 6));
        assert_eq!(plan.locate(0), (0, 0));
        assert_eq!(plan.locate(2), (1, 0));
        assert_eq!(plan.locate(9), (2, 1));
        let mut exp = Expectations::new(&plan);
        assert_eq!(&*exp.of(2).unwrap(), [0, 1]);
        assert!(Arc::ptr_eq(&exp.of(2).unwrap(), &exp.of(7).unwrap()));
    }

    #[test]
    fn fanout_to_all() {
        let scenario = Scenario::new(
            "f",
            Workload::Fanout(Fanout {
                connections: 5,
                subscribers: None,
                publishers: 1,
                topic: "t".into(),
            }),
        );
        let plan = Plan::new(&scenario).unwrap();
        assert_eq!(
            (plan.publishers, plan.subscribers, plan.groups.len()),
            (1, 4, 2)
        );
    }

    #[test]
    fn pairs_expect_their_own_publisher() {
        let scenario = Scenario::new(
            "p",
            Workload::Pairs(Pairs {
                pairs: 4,
                topic: "pairs/%i".into(),
            }),
        );
        let plan = Plan::new(&scenario).unwrap();
        let mut exp = Expectations::new(&plan);
        for pair in 0..4 {
            assert_eq!(&*exp.of(4 + pair).unwrap(), [pair]);
        }
    }

    #[test]
    fn fanin_wildcard_expects_everyone() {
        let scenario = Scenario::new(
            "i",
            Workload::Fanin(Fanin {
                publishers: 5,
                subscribers: 2,
                topic: "in/%i".into(),
                filter: "in/+".into(),
                shared_group: None,
                strategy: None,
            }),
        );
        let plan = Plan::new(&scenario).unwrap();
        let mut exp = Expectations::new(&plan);
        assert_eq!(&*exp.of(5).unwrap(), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn mixed_per_client_wildcards_and_overlaps() {
        let mut owners = Group::idle("owners", 3);
        owners.publish = Some("home/%i/temp".into());
        let mut watchers = Group::idle("watchers", 3);
        watchers.subscribe = vec!["home/%i/#".into(), "home/0/temp".into()];
        let scenario = Scenario::new("m", Workload::Mixed(vec![owners, watchers]));
        let plan = Plan::new(&scenario).unwrap();
        let mut exp = Expectations::new(&plan);
        assert_eq!(&*exp.of(3).unwrap(), [0]);
        assert_eq!(&*exp.of(4).unwrap(), [0, 1]);
        assert_eq!(&*exp.of(5).unwrap(), [0, 2]);
    }

    #[test]
    fn bad_plans_are_refused() {
        let mut group = Group::idle("g", 2);
        group.client_id = Some("same".into());
        assert!(Plan::new(&Scenario::new("m", Workload::Mixed(vec![group]))).is_err());

        let mut a = Group::idle("a", 2);
        a.client_id = Some("c%i".into());
        let mut b = Group::idle("b", 2);
        b.client_id = Some("c%i".into());
        assert!(Plan::new(&Scenario::new("m", Workload::Mixed(vec![a, b]))).is_err());

        let mut password_only = Scenario::new("m", Workload::Mixed(vec![Group::idle("g", 1)]));
        password_only.client.password = Some("secret".into());
        assert!(Plan::new(&password_only).is_err());
        password_only.broker.protocol = 5;
        assert!(Plan::new(&password_only).is_ok());

        let mut bad_topic = Group::idle("p", 1);
        bad_topic.publish = Some("a/+".into());
        assert!(Plan::new(&Scenario::new("m", Workload::Mixed(vec![bad_topic]))).is_err());
    }
}
