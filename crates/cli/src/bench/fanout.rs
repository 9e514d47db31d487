//! `tern bench fanout`: one publisher to S subscribers of the same topic. Measures how fast the
//! broker copies one inbound stream to many outbound connections; every subscriber must receive
//! every message.

use super::engine::{Group, MsgOpts, Plan};
use super::{MsgArgs, NetArgs, Rate, topic};
use tern_codec::QoS;

/// Arguments of `tern bench fanout`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub msg: MsgArgs,
    /// Subscriber connections.
    #[arg(short = 'S', long, default_value_t = 8)]
    pub subscribers: usize,
    /// Topic filter of the subscribers (`%i`: subscriber index); default: the topic.
    #[arg(long)]
    pub filter: Option<String>,
}

/// Topic when `-t` is not given.
pub const DEFAULT_TOPIC: &str = "bench/fanout";

/// The plan: one publisher, S subscribers each expecting all of it.
pub fn plan(args: &Args) -> anyhow::Result<(Plan, MsgOpts)> {
    let msg = args.msg.resolve(QoS::AtMostOnce, Rate(None))?;
    let topic_name = topic::expand(&args.msg.topic_or(DEFAULT_TOPIC), 0);
    let filter = args.filter.clone().unwrap_or_else(|| topic_name.clone());
    let s = args.subscribers.max(1);
    let plan = Plan {
        scenario: "fanout",
        publishers: vec![topic_name],
        subscribers: topic::expand_each(&filter, s),
        groups: (0..s)
            .map(|i| Group {
                members: vec![i],
                expected_from: vec![0],
            })
            .collect(),
        loss_from_gaps: false,
    };
    Ok((plan, msg))
}
