//! `tern bench shared`: P publishers to a shared subscription (`$share/GROUP/FILTER`, MQTT 5
//! section 4.8.2; Mosquitto also honours it for 3.1.1 clients) of S members. Each message must
//! reach exactly one member: losses and duplicates are counted across the whole group.

use super::engine::{Group, MsgOpts, Plan};
use super::{MsgArgs, NetArgs, Rate, topic};
use tern_codec::QoS;

/// Arguments of `tern bench shared`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub msg: MsgArgs,
    /// Publisher connections.
    #[arg(short = 'P', long, default_value_t = 4)]
    pub publishers: usize,
    /// Members of the shared subscription.
    #[arg(short = 'S', long, default_value_t = 4)]
    pub subscribers: usize,
    /// Share name.
    #[arg(long, default_value = "bench")]
    pub group: String,
    /// Topic filter shared by the members; it must match every publisher's topic.
    #[arg(long, default_value = "bench/shared/#")]
    pub filter: String,
}

/// Topic pattern when `-t` is not given.
pub const DEFAULT_TOPIC: &str = "bench/shared/%i";

/// The plan: one group of S members expecting every publisher once.
pub fn plan(args: &Args) -> anyhow::Result<(Plan, MsgOpts)> {
    let msg = args.msg.resolve(QoS::AtMostOnce, Rate(None))?;
    let pattern = args.msg.topic_or(DEFAULT_TOPIC);
    let p = args.publishers.max(1);
    let s = args.subscribers.max(1);
    let filter = format!("$share/{}/{}", args.group, args.filter);
    let plan = Plan {
        scenario: "shared",
        publishers: topic::expand_each(&pattern, p),
        subscribers: topic::expand_each(&filter, s),
        groups: vec![Group {
            members: (0..s).collect(),
            expected_from: (0..p).map(|i| i as u32).collect(),
        }],
        loss_from_gaps: false,
    };
    Ok((plan, msg))
}
