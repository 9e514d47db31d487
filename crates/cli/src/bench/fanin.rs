//! `tern bench fanin`: P publishers, each on its own topic, to one subscriber with a wildcard
//! filter. Measures how fast the broker routes many inbound streams into one outbound connection.

use super::engine::{Group, MsgOpts, Plan};
use super::{MsgArgs, NetArgs, Rate, topic};
use tern_codec::QoS;

/// Arguments of `tern bench fanin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub msg: MsgArgs,
    /// Publisher connections.
    #[arg(short = 'P', long, default_value_t = 4)]
    pub publishers: usize,
    /// Topic filter of the subscriber; it must match every publisher's topic.
    #[arg(long, default_value = "bench/fanin/#")]
    pub filter: String,
}

/// Topic pattern when `-t` is not given.
pub const DEFAULT_TOPIC: &str = "bench/fanin/%i";

/// The plan: P publishers, one subscriber expecting them all.
pub fn plan(args: &Args) -> anyhow::Result<(Plan, MsgOpts)> {
    let msg = args.msg.resolve(QoS::AtMostOnce, Rate(None))?;
    let pattern = args.msg.topic_or(DEFAULT_TOPIC);
    let p = args.publishers.max(1);
    let plan = Plan {
        scenario: "fanin",
        publishers: topic::expand_each(&pattern, p),
        subscribers: vec![topic::expand(&args.filter, 0)],
        groups: vec![Group {
            members: vec![0],
            expected_from: (0..p).map(|i| i as u32).collect(),
        }],
        loss_from_gaps: false,
    };
    Ok((plan, msg))
}
