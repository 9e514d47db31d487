//! Runs a [`Plan`]: connects the subscribers (and subscribes them), connects the publishers, starts
//! everyone at the same instant, publishes until the duration or count is reached, lets the
//! subscribers drain what is still on its way, then stops them and accounts for every message.
//!
//! Each connection is one tokio task running [`publisher`] or [`subscriber`]; they share only
//! atomic counters (for the progress line and the drain phase) and return their own figures when
//! they end, so the hot path takes no lock.
//!
//! Every phase is bounded: handshakes by a timeout, publishing by `-d`/`-n`, the acknowledgement of
//! the last publications by [`ACK_DRAIN`], the subscribers' drain by [`DRAIN_IDLE`] and
//! [`DRAIN_MAX`]; `mod.rs` adds a hard wall-clock cap over the whole run.

use super::driver::{AWAIT_ACK, AWAIT_COMP, Conn, Endpoint, InFlight, Template};
use super::payload::{self, Stamp};
use super::report::{ConnStats, Counters, MsgStats, Percentiles, Progress, Report, rate};
use super::stats::{Receiver, Tally, new_histogram};
use anyhow::bail;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tern_codec::{Packet, PubAck, PubComp, PubRec, PubRel, QoS};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, interval_at, sleep_until};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read at a time by a slow consumer (`--sub-rate`).
const SLOW_CHUNK: usize = 4 * 1024;
/// A publisher stops encoding when this much awaits writing.
const WRITE_BATCH: usize = 64 * 1024;
/// PINGREQ interval (the keep-alive sent in CONNECT is three times this).
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// How long a publisher waits, after its last publication, for the outstanding acknowledgements.
pub const ACK_DRAIN: Duration = Duration::from_secs(10);
/// The subscribers' drain ends when nothing arrived for this long...
pub const DRAIN_IDLE: Duration = Duration::from_millis(1500);
/// ...or after this long in any case.
pub const DRAIN_MAX: Duration = Duration::from_secs(15);

/// Who publishes and who subscribes, and which deliveries are expected.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario name, for the report.
    pub scenario: &'static str,
    /// One topic per publisher; the publisher's id is its index.
    pub publishers: Vec<String>,
    /// One topic filter per subscriber.
    pub subscribers: Vec<String>,
    /// Subscriber groups that should each receive, once, every message of some publishers.
    pub groups: Vec<Group>,
    /// Count losses from gaps in sequence numbers (the publishers are in another process).
    pub loss_from_gaps: bool,
}

/// Subscribers that together should receive each message of `expected_from` exactly once.
#[derive(Debug, Clone)]
pub struct Group {
    /// Indexes into [`Plan::subscribers`].
    pub members: Vec<usize>,
    /// Publisher ids.
    pub expected_from: Vec<u32>,
}

/// How the broker is reached and how connections are opened.
#[derive(Debug, Clone)]
pub struct NetOpts {
    /// Address and protocol.
    pub endpoint: Endpoint,
    /// URL for the report.
    pub url: String,
    /// Connections per second; `None` for as fast as allowed.
    pub connect_rate: Option<f64>,
    /// Handshakes in progress at once.
    pub connect_concurrency: usize,
    /// Draw the progress line.
    pub progress: bool,
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct MsgOpts {
    /// QoS of publications and subscriptions.
    pub qos: QoS,
    /// Payload size, bytes.
    pub payload_size: usize,
    /// Total messages per second over all publishers; `None` for as fast as allowed.
    pub rate: Option<f64>,
    /// In-flight window per publisher.
    pub inflight: usize,
    /// Publishing duration.
    pub duration: Option<Duration>,
    /// Messages per publisher.
    pub count: Option<u64>,
    /// Messages per second each subscriber reads at most (a slow consumer); `None`: as fast as
    /// they come.
    pub sub_rate: Option<f64>,
    /// Subscribers keep a persistent session.
    pub persistent: bool,
}

/// What one publisher did.
#[derive(Debug, Default)]
struct PubResult {
    sent: u64,
    acked: u64,
    finished: Option<Instant>,
    error: Option<String>,
}

/// What one subscriber received.
#[derive(Debug)]
struct SubResult {
    rx: Receiver,
    error: Option<String>,
}

/// Per-publisher settings of a run.
#[derive(Debug, Clone)]
struct PubRun {
    id: u32,
    qos: QoS,
    window: usize,
    /// Time between two publications of this publisher, when rate-limited.
    interval: Option<Duration>,
    go: Instant,
    deadline: Option<Instant>,
    count: Option<u64>,
}

impl PubRun {
    /// When publication number `seq` is due, when rate-limited.
    fn due(&self, seq: u64) -> Option<Instant> {
        let interval = self.interval?;
        Some(self.go + interval.mul_f64(seq as f64))
    }
}

/// Outcome of opening a batch of connections.
pub struct Opened {
    /// The connections, in index order; `None` where it failed.
    pub conns: Vec<Option<Conn>>,
    /// The first few errors.
    pub errors: Vec<String>,
    /// Figures.
    pub stats: ConnStats,
}

/// Opens `n` connections (subscribing each to `filters[i]` when given), at most
/// `connect_concurrency` handshakes at once and at `connect_rate` per second.
pub async fn open_all(
    net: &NetOpts,
    n: usize,
    name: impl Fn(usize) -> String,
    filters: Option<(&[String], QoS, bool)>,
    counters: &Arc<Counters>,
    progress: &mut Progress,
) -> anyhow::Result<Opened> {
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(net.connect_concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let ep = net.endpoint.clone();
        let id = name(i);
        let filter = filters.and_then(|(f, q, p)| f.get(i).map(|f| (f.clone(), q, p)));
        let limit = limit.clone();
        let counters = counters.clone();
        let at = net
            .connect_rate
            .map(|r| started + Duration::from_secs_f64(i as f64 / r));
        set.spawn(async move {
            if let Some(at) = at {
                sleep_until(at).await;
            }
            let _permit = limit.acquire_owned().await;
            let t0 = Instant::now();
            let result = async {
                let persistent = filter.as_ref().is_some_and(|(_, _, p)| *p);
                let mut conn = Conn::open(&ep, &id, persistent).await?;
                if let Some((filter, qos, _)) = filter {
                    conn.subscribe(&filter, qos).await?;
                }
                anyhow::Ok(conn)
            }
            .await;
            if result.is_ok() {
                counters.connected.fetch_add(1, Ordering::Relaxed);
            }
            (i, result, t0.elapsed(), Instant::now())
        });
    }
    let mut conns: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    let mut hist = new_histogram()?;
    let mut errors = Vec::new();
    let mut failed = 0;
    let mut last = started;
    let mut ticker = tokio::time::interval(Progress::INTERVAL);
    loop {
        let joined = tokio::select! {
            joined = set.join_next() => joined,
            _ = ticker.tick() => {
                progress.tick("connecting");
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (i, result, took, done) = joined?;
        match result {
            Ok(conn) => {
                let _ = hist.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
                last = last.max(done);
                if let Some(slot) = conns.get_mut(i) {
                    *slot = Some(conn);
                }
            }
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(format!("connection {i}: {e:#}"));
                }
            }
        }
    }
    let established = n - failed;
    let elapsed_s = last.duration_since(started).as_secs_f64();
    Ok(Opened {
        conns,
        errors,
        stats: ConnStats {
            attempted: n,
            established,
            failed,
            elapsed_s,
            per_s: rate(established as u64, elapsed_s),
            latency_us: Percentiles::from_ns(&hist),
            held_s: None,
            dropped: None,
        },
    })
}

fn merge_conn_stats(a: ConnStats, b: ConnStats) -> ConnStats {
    let established = a.established + b.established;
    let elapsed_s = a.elapsed_s + b.elapsed_s;
    // Percentiles cannot be merged; keep the larger population's.
    let latency_us = if a.established >= b.established {
        a.latency_us.or(b.latency_us)
    } else {
        b.latency_us.or(a.latency_us)
    };
    ConnStats {
        attempted: a.attempted + b.attempted,
        established,
        failed: a.failed + b.failed,
        elapsed_s,
        per_s: rate(established as u64, elapsed_s),
        latency_us,
        held_s: None,
        dropped: None,
    }
}

/// Runs a publish/subscribe plan to the end and reports.
pub async fn run_plan(plan: Plan, net: &NetOpts, msg: &MsgOpts) -> anyhow::Result<Report> {
    let counters = Arc::new(Counters::default());
    let mut progress = Progress::new(counters.clone(), net.progress);
    let version = net.endpoint.version;
    let templates = plan
        .publishers
        .iter()
        .map(|topic| Template::new(topic, msg.qos, msg.payload_size, version))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let histogram = new_histogram()?;
    let pid = std::process::id();
    progress.tick("connecting");

    // Subscribers first, so that nothing published is missed.
    let subs = open_all(
        net,
        plan.subscribers.len(),
        |i| format!("tb{pid}s{i}"),
        Some((&plan.subscribers, msg.qos, msg.persistent)),
        &counters,
        &mut progress,
    )
    .await?;
    let pubs = open_all(
        net,
        plan.publishers.len(),
        |i| format!("tb{pid}p{i}"),
        None,
        &counters,
        &mut progress,
    )
    .await?;
    let conn_stats = merge_conn_stats(subs.stats, pubs.stats);
    let mut report = Report {
        scenario: plan.scenario.to_string(),
        broker: net.url.clone(),
        mqtt_version: version_name(version).to_string(),
        publishers: plan.publishers.len(),
        subscribers: plan.subscribers.len(),
        connections: conn_stats,
        messages: None,
        errors: Vec::new(),
    };
    if report.connections.failed > 0 {
        report.errors.extend(subs.errors);
        report.errors.extend(pubs.errors);
        progress.finish();
        return Ok(report);
    }

    let go = Instant::now() + Duration::from_millis(20);
    let started_unix_s = (payload::now_ns() as f64 / 1e9) + 0.020;
    let deadline = msg.duration.map(|d| go + d);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sub_tasks = JoinSet::new();
    for (i, conn) in subs.conns.into_iter().enumerate() {
        let Some(conn) = conn else { continue };
        let rx = Receiver::new(histogram.clone());
        sub_tasks.spawn(subscriber(
            i,
            conn,
            rx,
            stop_rx.clone(),
            go,
            msg.sub_rate,
            counters.clone(),
        ));
    }
    let per_pub_interval = msg.rate.and_then(|r| {
        (r > 0.0 && !plan.publishers.is_empty())
            .then(|| Duration::from_secs_f64(plan.publishers.len() as f64 / r))
    });
    let mut pub_tasks = JoinSet::new();
    for (i, (conn, template)) in pubs.conns.into_iter().zip(templates).enumerate() {
        let Some(conn) = conn else { continue };
        let run = PubRun {
            id: u32::try_from(i)?,
            qos: msg.qos,
            window: msg.inflight,
            interval: per_pub_interval,
            go,
            deadline,
            count: msg.count,
        };
        pub_tasks.spawn(publisher(conn, template, run, counters.clone()));
    }

    // Publishing phase.
    let mut ticker = tokio::time::interval(Progress::INTERVAL);
    let mut sent = vec![0u64; plan.publishers.len()];
    let mut acked = 0u64;
    let mut publish_end = go;
    if plan.publishers.is_empty() {
        // `tern bench sub`: receive for the duration.
        let end = deadline.unwrap_or(go);
        loop {
            tokio::select! {
                _ = sleep_until(end) => break,
                _ = ticker.tick() => progress.tick("receiving"),
            }
        }
        publish_end = end;
    } else {
        loop {
            tokio::select! {
                joined = pub_tasks.join_next() => {
                    let Some(joined) = joined else { break };
                    let (id, r) = joined?;
                    if let Some(slot) = sent.get_mut(id as usize) {
                        *slot = r.sent;
                    }
                    acked += r.acked;
                    if let Some(f) = r.finished {
                        publish_end = publish_end.max(f);
                    }
                    if let Some(e) = r.error {
                        report.errors.push(e);
                    }
                }
                _ = ticker.tick() => progress.tick("publishing"),
            }
        }
    }

    // Drain: wait for what is still on its way to the subscribers.
    let total_sent: u64 = sent.iter().sum();
    let expected: u64 = plan
        .groups
        .iter()
        .map(|g| {
            g.expected_from
                .iter()
                .map(|&p| sent.get(p as usize).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .sum();
    if !plan.subscribers.is_empty() && !plan.publishers.is_empty() {
        let drain_start = Instant::now();
        let mut last_count = counters.received.load(Ordering::Relaxed);
        let mut last_change = drain_start;
        loop {
            let now = Instant::now();
            let received = counters.received.load(Ordering::Relaxed);
            if received >= expected || sub_tasks.is_empty() {
                break;
            }
            if received != last_count {
                last_count = received;
                last_change = now;
            }
            if now.duration_since(last_change) >= DRAIN_IDLE
                || now.duration_since(drain_start) >= DRAIN_MAX
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            progress.tick("draining");
        }
    }
    let _ = stop_tx.send(true);
    let mut receivers: Vec<Option<Receiver>> = (0..plan.subscribers.len()).map(|_| None).collect();
    while let Some(joined) = sub_tasks.join_next().await {
        let (i, r) = joined?;
        if let Some(e) = r.error {
            report.errors.push(e);
        }
        if let Some(slot) = receivers.get_mut(i) {
            *slot = Some(r.rx);
        }
    }
    progress.finish();

    // Accounting.
    let present: Vec<&Receiver> = receivers.iter().flatten().collect();
    let delivered: u64 = present.iter().map(|r| r.received).sum();
    let mut latency = histogram.clone();
    for r in &present {
        let _ = latency.add(&r.latency);
    }
    let last_delivery = present
        .iter()
        .filter_map(|r| r.last_at)
        .max()
        .map(Instant::from_std);
    // From the start of publishing; for `sub`, whose publishers started at some other time, from
    // the first message received.
    let delivery_from = if plan.publishers.is_empty() {
        present
            .iter()
            .filter_map(|r| r.first_at)
            .min()
            .map_or(go, Instant::from_std)
    } else {
        go
    };
    let delivery_s = last_delivery.map_or(0.0, |t| {
        t.saturating_duration_since(delivery_from).as_secs_f64()
    });
    let publish_s = publish_end.saturating_duration_since(go).as_secs_f64();
    let foreign = present.iter().map(|r| r.foreign).sum();
    let (expected, lost, duplicates, out_of_order, from) = if plan.loss_from_gaps {
        let gaps: u64 = present.iter().map(|r| r.gaps()).sum();
        let distinct: u64 = present.iter().map(|r| r.distinct()).sum();
        (
            distinct + gaps,
            gaps,
            present.iter().map(|r| r.duplicates).sum(),
            present.iter().map(|r| r.out_of_order).sum(),
            "gaps",
        )
    } else {
        let mut tally = Tally::default();
        for g in &plan.groups {
            let members: Vec<&Receiver> = g
                .members
                .iter()
                .filter_map(|&m| receivers.get(m).and_then(Option::as_ref))
                .collect();
            tally.add_group(&members, &g.expected_from, &sent);
        }
        debug_assert_eq!(tally.expected, expected);
        (
            tally.expected,
            tally.lost,
            tally.duplicates,
            tally.out_of_order,
            "sent",
        )
    };
    let skew: u64 = present.iter().map(|r| r.clock_skew).sum();
    if skew > 0 {
        report.errors.push(format!(
            "{skew} messages were stamped later than they arrived (clocks differ?)"
        ));
    }
    report.messages = Some(MsgStats {
        qos: msg.qos as u8,
        payload_bytes: msg.payload_size,
        rate_limit: msg.rate,
        inflight: msg.inflight,
        sub_rate_limit: msg.sub_rate,
        started_unix_s,
        publish_s,
        sent: total_sent,
        sent_per_s: rate(total_sent, publish_s),
        acked,
        delivered,
        delivery_s,
        delivered_per_s: rate(delivered, delivery_s),
        expected,
        lost,
        duplicates,
        out_of_order,
        foreign,
        loss_counted_from: from.to_string(),
        latency_us: Percentiles::from_ns(&latency),
    });
    Ok(report)
}

/// The protocol version as people write it.
pub fn version_name(v: tern_codec::ProtocolVersion) -> &'static str {
    match v {
        tern_codec::ProtocolVersion::V31 => "3.1",
        tern_codec::ProtocolVersion::V311 => "3.1.1",
        tern_codec::ProtocolVersion::V5 => "5",
    }
}

enum Event {
    Read(std::io::Result<()>),
    Write(std::io::Result<()>),
    Timer,
    Ping,
    Stop,
}

/// One publisher connection: publishes from `run.go` until the deadline or count, keeping at most
/// the in-flight window unacknowledged, then waits for the last acknowledgements.
async fn publisher(
    mut conn: Conn,
    template: Template,
    run: PubRun,
    counters: Arc<Counters>,
) -> (u32, PubResult) {
    let mut out = PubResult::default();
    match publish_loop(&mut conn, &template, &run, &counters, &mut out).await {
        Ok(()) => conn.disconnect().await,
        Err(e) => out.error = Some(format!("publisher {}: {e:#}", run.id)),
    }
    (run.id, out)
}

async fn publish_loop(
    conn: &mut Conn,
    template: &Template,
    run: &PubRun,
    counters: &Counters,
    out: &mut PubResult,
) -> anyhow::Result<()> {
    let qos0 = run.qos == QoS::AtMostOnce;
    let mut inflight = InFlight::new(run.window.min(usize::from(conn.receive_maximum)));
    sleep_until(run.go).await;
    let mut ping = interval_at(run.go + PING_EVERY, PING_EVERY);
    let mut done_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if done_at.is_none()
            && (run.deadline.is_some_and(|d| now >= d) || run.count.is_some_and(|n| out.sent >= n))
        {
            done_at = Some(now);
            out.finished = Some(now);
        }
        let may_publish = |done: bool, sent: u64, inflight: &InFlight| {
            !done
                && (qos0 || inflight.has_room())
                && run.count.is_none_or(|n| sent < n)
                && run.due(sent).is_none_or(|due| due <= now)
        };
        if may_publish(done_at.is_some(), out.sent, &inflight) {
            let sent_ns = payload::now_ns();
            let before = out.sent;
            while conn.wbuf.len() < WRITE_BATCH && may_publish(false, out.sent, &inflight) {
                let packet_id = if qos0 {
                    0
                } else {
                    match inflight.alloc() {
                        Some(id) => id,
                        None => break,
                    }
                };
                let stamp = Stamp {
                    publisher: run.id,
                    seq: out.sent,
                    sent_ns,
                };
                template.append(&mut conn.wbuf, packet_id, stamp);
                out.sent += 1;
            }
            counters
                .sent
                .fetch_add(out.sent - before, Ordering::Relaxed);
            if done_at.is_none() && run.count.is_some_and(|n| out.sent >= n) {
                done_at = Some(now);
                out.finished = Some(now);
            }
        }
        if !conn.wbuf.is_empty() {
            conn.try_flush()?;
        }
        if let Some(done) = done_at {
            if conn.wbuf.is_empty() && inflight.is_empty() {
                return Ok(());
            }
            if now >= done + ACK_DRAIN {
                bail!(
                    "{} publications still unacknowledged {ACK_DRAIN:?} after the last one",
                    inflight.len()
                );
            }
        }
        let want_write =
            !conn.wbuf.is_empty() || may_publish(done_at.is_some(), out.sent, &inflight);
        let wake = match done_at {
            Some(done) => Some(done + ACK_DRAIN),
            None => {
                let due = if qos0 || inflight.has_room() {
                    run.due(out.sent)
                } else {
                    None
                };
                match (due, run.deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        let event = tokio::select! {
            biased;
            r = conn.stream.readable() => Event::Read(r),
            r = conn.stream.writable(), if want_write => Event::Write(r),
            _ = sleep_until(wake.unwrap_or(now)), if wake.is_some() => Event::Timer,
            _ = ping.tick() => Event::Ping,
        };
        match event {
            Event::Read(r) => {
                r?;
                if conn.try_fill(READ_CHUNK)? {
                    out.acked += handle_acks(conn, &mut inflight)?;
                }
            }
            Event::Write(r) => r?,
            Event::Timer | Event::Stop => {}
            Event::Ping => conn.encode(&Packet::PingReq)?,
        }
    }
}

/// Handles what a publisher receives; returns the publications completed.
fn handle_acks(conn: &mut Conn, inflight: &mut InFlight) -> anyhow::Result<u64> {
    let mut completed = 0;
    while let Some(packet) = conn.decode()? {
        match packet {
            Packet::PubAck(ack) => {
                if ack.reason_code.is_error() {
                    bail!(
                        "PUBACK {} (0x{:02X})",
                        ack.reason_code.name(),
                        ack.reason_code.0
                    );
                }
                if !inflight.advance(ack.packet_id, AWAIT_ACK, 0) {
                    bail!(
                        "PUBACK for packet identifier {} not in flight",
                        ack.packet_id
                    );
                }
                completed += 1;
            }
            Packet::PubRec(rec) => {
                if rec.reason_code.is_error() {
                    bail!(
                        "PUBREC {} (0x{:02X})",
                        rec.reason_code.name(),
                        rec.reason_code.0
                    );
                }
                if !inflight.advance(rec.packet_id, AWAIT_ACK, AWAIT_COMP) {
                    bail!(
                        "PUBREC for packet identifier {} not in flight",
                        rec.packet_id
                    );
                }
                conn.encode(&Packet::PubRel(PubRel::new(rec.packet_id)))?;
            }
            Packet::PubComp(comp) => {
                if !inflight.advance(comp.packet_id, AWAIT_COMP, 0) {
                    bail!(
                        "PUBCOMP for packet identifier {} not awaited",
                        comp.packet_id
                    );
                }
                completed += 1;
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => bail!(
                "the broker sent DISCONNECT {} (0x{:02X})",
                d.reason_code.name(),
                d.reason_code.0
            ),
            other => bail!("unexpected {} from the broker", other.name()),
        }
    }
    Ok(completed)
}

/// One subscriber connection: receives, acknowledges and accounts until told to stop.
async fn subscriber(
    index: usize,
    mut conn: Conn,
    mut rx: Receiver,
    mut stop: watch::Receiver<bool>,
    go: Instant,
    sub_rate: Option<f64>,
    counters: Arc<Counters>,
) -> (usize, SubResult) {
    let result = subscribe_loop(&mut conn, &mut rx, &mut stop, go, sub_rate, &counters).await;
    let error = match result {
        Ok(()) => {
            conn.disconnect().await;
            None
        }
        Err(e) => Some(format!("subscriber {index}: {e:#}")),
    };
    (index, SubResult { rx, error })
}

async fn subscribe_loop(
    conn: &mut Conn,
    rx: &mut Receiver,
    stop: &mut watch::Receiver<bool>,
    go: Instant,
    sub_rate: Option<f64>,
    counters: &Counters,
) -> anyhow::Result<()> {
    let mut ping = interval_at(go + PING_EVERY, PING_EVERY);
    // A slow consumer reads small chunks, and only when it is behind its schedule, so that the
    // broker has to queue (or drop) what it cannot deliver.
    let chunk = if sub_rate.is_some() {
        SLOW_CHUNK
    } else {
        READ_CHUNK
    };
    loop {
        let next_read = sub_rate
            .map(|r| go + Duration::from_secs_f64(rx.received as f64 / r))
            .filter(|&due| due > Instant::now());
        let event = tokio::select! {
            biased;
            _ = stop.changed() => Event::Stop,
            r = conn.stream.readable(), if next_read.is_none() => Event::Read(r),
            r = conn.stream.writable(), if !conn.wbuf.is_empty() => Event::Write(r),
            _ = sleep_until(next_read.unwrap_or_else(Instant::now)), if next_read.is_some() => {
                Event::Timer
            }
            _ = ping.tick() => Event::Ping,
        };
        match event {
            Event::Stop => return Ok(()),
            Event::Read(r) => {
                r?;
                if conn.try_fill(chunk)? {
                    let n = receive(conn, rx)?;
                    if n > 0 {
                        let now = std::time::Instant::now();
                        rx.first_at.get_or_insert(now);
                        rx.last_at = Some(now);
                        counters.received.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
            Event::Write(r) => r?,
            Event::Ping => conn.encode(&Packet::PingReq)?,
            Event::Timer => {}
        }
        if !conn.wbuf.is_empty() {
            conn.try_flush()?;
        }
    }
}

/// Decodes and accounts for what a subscriber received; returns the messages received.
fn receive(conn: &mut Conn, rx: &mut Receiver) -> anyhow::Result<u64> {
    // One clock reading per read: the messages of one read arrived together.
    let now_ns = payload::now_ns();
    let mut n = 0;
    while let Some(packet) = conn.decode()? {
        match packet {
            Packet::Publish(p) => {
                rx.record(&p.payload, now_ns);
                n += 1;
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => conn.encode(&Packet::PubAck(PubAck::new(p.packet_id)))?,
                    QoS::ExactlyOnce => conn.encode(&Packet::PubRec(PubRec::new(p.packet_id)))?,
                }
            }
            Packet::PubRel(rel) => conn.encode(&Packet::PubComp(PubComp::new(rel.packet_id)))?,
            Packet::PingResp | Packet::SubAck(_) => {}
            Packet::Disconnect(d) => bail!(
                "the broker sent DISCONNECT {} (0x{:02X})",
                d.reason_code.name(),
                d.reason_code.0
            ),
            other => bail!("unexpected {} from the broker", other.name()),
        }
    }
    Ok(n)
}
