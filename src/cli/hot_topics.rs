//! `shardmq hot-topics`: prints the hot-topic ranking, from Redis (`--redis`: the ranking every
//! broker sharing that Redis adds to) or else from a running broker's admin API
//! (`GET /api/v1/topics/hot`, through [`AdminClient`]).

use clap::Args;

use super::admin_client::{AdminArgs, AdminClient};
use crate::config::Settings;
use crate::monitor::hot_redis;
use crate::status::hot::Ranking;

/// Arguments of `shardmq hot-topics`.
#[derive(Args, Debug)]
pub struct HotTopicsArgs {
    /// Topics (and filters) to print.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Read the ranking from this Redis (`shardmq:hot:*` keys) instead of the admin API.
    #[arg(long, value_name = "URL", conflicts_with_all = ["admin", "token"])]
    pub redis: Option<String>,
}

/// Fetches and prints the ranking; the admin address and token default to the configuration's.
pub fn run(args: &HotTopicsArgs, settings: &Settings) -> anyhow::Result<()> {
    if let Some(url) = &args.redis {
        print!("{}", format(&hot_redis::ranking(url, args.top)?));
        return Ok(());
    }
    let answer: Ranking = AdminClient::new(&args.admin, settings)?
        .get_json(&format!("/api/v1/topics/hot?top={}", args.top))?;
    print!("{}", format(&answer));
    Ok(())
}

fn format(answer: &Ranking) -> String {
    let mut out = format!("{:>4}  {:>12}  topic\n", "rank", "publishes");
    for (rank, topic) in answer.topics.iter().enumerate() {
        out.push_str(&format!(
            "{:>4}  {:>12}  {}\n",
            rank + 1,
            topic.publishes,
            topic.topic
        ));
    }
    if answer.untracked > 0 {
        out.push_str(&format!(
            "      {:>12}  (untracked: over the tracking bounds)\n",
            answer.untracked
        ));
    }
    out.push_str(&format!("\n{:>4}  {:>12}  filter\n", "rank", "subscribers"));
    for (rank, filter) in answer.filters.iter().enumerate() {
        out.push_str(&format!(
            "{:>4}  {:>12}  {}\n",
            rank + 1,
            filter.subscribers,
            filter.filter
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::hot::{FilterRank, TopicRank};

    #[test]
    fn reads_what_the_api_writes() {
        let ranking = Ranking {
            topics: vec![TopicRank {
                topic: "a/b".into(),
                publishes: 7,
            }],
            filters: vec![FilterRank {
                filter: "a/#".into(),
                subscribers: 2,
            }],
            untracked: 3,
        };
        let answer: Ranking = serde_json::from_value(serde_json::json!(ranking)).unwrap();
        let text = format(&answer);
        assert!(text.contains("   1             7  a/b\n"), "{text}");
        assert!(text.contains("   1             2  a/#\n"), "{text}");
        assert!(text.contains("3  (untracked"), "{text}");
    }
}
