//! `tern bench pub`: C publishers and no subscriber, for the publish side alone (or to feed a
//! `tern bench sub` in another process). Reports the publish and acknowledgement rates.

use super::engine::{MsgOpts, Plan};
use super::{MsgArgs, NetArgs, Rate, topic};
use tern_codec::QoS;

/// Arguments of `tern bench pub`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub msg: MsgArgs,
    /// Publisher connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub clients: usize,
}

/// Topic pattern when `-t` is not given.
pub const DEFAULT_TOPIC: &str = "bench/pub/%i";

/// The plan: publishers only.
pub fn plan(args: &Args) -> anyhow::Result<(Plan, MsgOpts)> {
    let msg = args.msg.resolve(QoS::AtMostOnce, Rate(None))?;
    let pattern = args.msg.topic_or(DEFAULT_TOPIC);
    let plan = Plan {
        scenario: "pub",
        publishers: topic::expand_each(&pattern, args.clients.max(1)),
        subscribers: Vec::new(),
        groups: Vec::new(),
        loss_from_gaps: false,
    };
    Ok((plan, msg))
}
