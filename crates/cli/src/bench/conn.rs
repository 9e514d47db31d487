//! `tern bench conn`: C connections opened at a given rate (`--connect-rate`) and then held idle
//! for `-d`, to measure the connect rate, the handshake latency and, seen from the broker's side
//! (`scripts/bench-compare.sh` samples its RSS), the memory an idle connection costs. At the end
//! every connection is checked to be still open, then closed.

use super::engine::{NetOpts, open_all, version_name};
use super::report::{Counters, Progress, Report};
use super::{NetArgs, parse_duration};
use std::sync::Arc;
use std::time::Duration;
use tern_codec::{Disconnect, Packet};
use tokio::time::{Instant, sleep_until};

/// Arguments of `tern bench conn`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    /// Connections to open.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// How long to hold the connections once all are open (`10s`, `1m`…).
    #[arg(short = 'd', long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
}

impl Args {
    /// The hold time.
    pub fn hold(&self) -> Duration {
        self.duration
    }
}

/// Keep Alive long enough that idle connections need no PINGREQ while held.
pub fn keep_alive(args: &Args) -> u16 {
    u16::try_from(args.duration.as_secs().saturating_add(120)).unwrap_or(u16::MAX)
}

/// Opens, holds, checks and closes the connections.
pub async fn run(args: &Args, net: &NetOpts) -> anyhow::Result<Report> {
    let counters = Arc::new(Counters::default());
    let mut progress = Progress::new(counters.clone(), net.progress);
    let pid = std::process::id();
    let opened = open_all(
        net,
        args.connections,
        |i| format!("tb{pid}c{i}"),
        None,
        &counters,
        &mut progress,
    )
    .await?;
    let mut conns: Vec<_> = opened.conns.into_iter().flatten().collect();
    for c in &mut conns {
        // Idle connections keep no buffers: a held connection should cost the load generator
        // little more than its socket.
        c.rbuf = bytes::BytesMut::new();
        c.wbuf = bytes::BytesMut::new();
    }

    let hold_start = Instant::now();
    let mut ticker = tokio::time::interval(super::report::Progress::INTERVAL);
    let end = hold_start + args.duration;
    loop {
        tokio::select! {
            _ = sleep_until(end) => break,
            _ = ticker.tick() => progress.tick("holding"),
        }
    }
    let held_s = hold_start.elapsed().as_secs_f64();
    // Still open? An idle connection has nothing to read; an end of stream or error means the
    // broker closed it.
    let mut dropped = 0;
    for c in &mut conns {
        if c.try_fill(64).is_err() {
            dropped += 1;
        }
    }
    progress.finish();
    for c in &mut conns {
        if c.encode(&Packet::Disconnect(Disconnect::default())).is_ok() {
            let _ = c.try_flush();
        }
    }
    drop(conns);

    let mut stats = opened.stats;
    stats.held_s = Some(held_s);
    stats.dropped = Some(dropped);
    let mut errors = opened.errors;
    if stats.failed > 0 {
        errors.insert(
            0,
            format!("{} of {} connections failed", stats.failed, stats.attempted),
        );
    }
    if dropped > 0 {
        errors.push(format!(
            "{dropped} connections were closed by the broker while idle"
        ));
    }
    Ok(Report {
        scenario: "conn".to_string(),
        broker: net.url.clone(),
        mqtt_version: version_name(net.endpoint.version).to_string(),
        publishers: 0,
        subscribers: args.connections,
        connections: stats,
        messages: None,
        errors,
    })
}
