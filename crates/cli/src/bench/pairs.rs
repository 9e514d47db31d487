//! `tern bench pairs`: N independent publisher → subscriber pairs, each on its own topic. Measures
//! routing without fan-in or fan-out, the case a multi-core broker should scale best on.

use super::engine::{Group, MsgOpts, Plan};
use super::{MsgArgs, NetArgs, Rate, topic};
use tern_codec::QoS;

/// Arguments of `tern bench pairs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub msg: MsgArgs,
    /// Publisher/subscriber pairs.
    #[arg(short = 'N', long, default_value_t = 8)]
    pub pairs: usize,
}

/// Topic pattern when `-t` is not given; `%i` is the pair index.
pub const DEFAULT_TOPIC: &str = "bench/pairs/%i";

/// The plan: pair i's subscriber expects pair i's publisher only.
pub fn plan(args: &Args) -> anyhow::Result<(Plan, MsgOpts)> {
    let msg = args.msg.resolve(QoS::AtMostOnce, Rate(None))?;
    Ok((
        pairs_plan("pairs", &args.msg.topic_or(DEFAULT_TOPIC), args.pairs),
        msg,
    ))
}

/// N pairs on `pattern` (shared with `latency`).
pub fn pairs_plan(scenario: &'static str, pattern: &str, n: usize) -> Plan {
    let n = n.max(1);
    let topics = topic::expand_each(pattern, n);
    Plan {
        scenario,
        publishers: topics.clone(),
        subscribers: topics,
        groups: (0..n)
            .map(|i| Group {
                members: vec![i],
                expected_from: vec![i as u32],
            })
            .collect(),
        loss_from_gaps: false,
    }
}
