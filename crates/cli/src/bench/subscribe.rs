//! `tern bench sub`: C subscribers and no publisher, for publishers in another process (`tern
//! bench pub`, or anything else). Losses are counted from gaps in each publisher's sequence
//! numbers; payloads that are not benchmark payloads are counted as foreign. Runs for `-d`.

use super::engine::{Group, MsgOpts, Plan};
use super::{MsgArgs, NetArgs, Rate, topic};
use anyhow::bail;
use tern_codec::QoS;

/// Arguments of `tern bench sub`. `-t` is the topic filter (with `%i`, the subscriber index).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub msg: MsgArgs,
    /// Subscriber connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub clients: usize,
}

/// Topic filter when `-t` is not given.
pub const DEFAULT_FILTER: &str = "bench/#";

/// The plan: subscribers only, losses from gaps.
pub fn plan(args: &Args) -> anyhow::Result<(Plan, MsgOpts)> {
    if args.msg.count.is_some() {
        bail!("tern bench sub runs for a duration (-d), not a count (-n)");
    }
    let msg = args.msg.resolve(QoS::AtMostOnce, Rate(None))?;
    let pattern = args.msg.topic_or(DEFAULT_FILTER);
    let n = args.clients.max(1);
    let plan = Plan {
        scenario: "sub",
        publishers: Vec::new(),
        subscribers: topic::expand_each(&pattern, n),
        groups: (0..n)
            .map(|i| Group {
                members: vec![i],
                expected_from: Vec::new(),
            })
            .collect(),
        loss_from_gaps: true,
    };
    Ok((plan, msg))
}
