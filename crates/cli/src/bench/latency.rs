//! `tern bench latency`: end-to-end latency at a fixed, moderate rate (default 1,000 msg/s at QoS
//! 1 over one pair), where the broker is not saturated and the tail (p99, p99.9) shows what it
//! costs a message to go through: scheduling, Nagle (TCP_NODELAY), queueing.

use super::engine::{MsgOpts, Plan};
use super::pairs::pairs_plan;
use super::{MsgArgs, NetArgs, Rate};
use tern_codec::QoS;

/// Arguments of `tern bench latency`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub msg: MsgArgs,
    /// Publisher/subscriber pairs; the rate is shared among them.
    #[arg(short = 'N', long, default_value_t = 1)]
    pub pairs: usize,
}

/// Topic pattern when `-t` is not given.
pub const DEFAULT_TOPIC: &str = "bench/latency/%i";
/// Total rate when `--rate` is not given, messages/s.
pub const DEFAULT_RATE: f64 = 1000.0;

/// The plan: pairs at a fixed rate, QoS 1 by default.
pub fn plan(args: &Args) -> anyhow::Result<(Plan, MsgOpts)> {
    let msg = args
        .msg
        .resolve(QoS::AtLeastOnce, Rate(Some(DEFAULT_RATE)))?;
    Ok((
        pairs_plan("latency", &args.msg.topic_or(DEFAULT_TOPIC), args.pairs),
        msg,
    ))
}
