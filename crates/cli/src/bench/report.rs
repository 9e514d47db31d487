//! The result of a run: a [`Report`] printed as a short human summary or, with `--json`, as one
//! JSON object on standard output for scripts (`scripts/bench-compare.sh` reads it). Also the
//! live progress line.

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name (`fanin`, `conn`…).
    pub scenario: String,
    /// Broker URL.
    pub broker: String,
    /// MQTT version spoken (`3.1`, `3.1.1`, `5`).
    pub mqtt_version: String,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscriber connections (or idle connections for `conn`).
    pub subscribers: usize,
    /// Connection set-up.
    pub connections: ConnStats,
    /// Message figures; absent for `conn`.
    pub messages: Option<MsgStats>,
    /// What went wrong, if anything; a run with errors exits with status 1.
    pub errors: Vec<String>,
}

/// Connection set-up figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnStats {
    /// Connections attempted.
    pub attempted: usize,
    /// Connections that got a successful CONNACK (and SUBACK, for subscribers).
    pub established: usize,
    /// Connections that failed.
    pub failed: usize,
    /// Seconds from the first attempt to the last CONNACK.
    pub elapsed_s: f64,
    /// Connections established per second.
    pub per_s: f64,
    /// Time from TCP connect to CONNACK (and SUBACK), microseconds.
    pub latency_us: Option<Percentiles>,
    /// `conn` only: how long the connections were held idle, seconds.
    pub held_s: Option<f64>,
    /// `conn` only: connections the broker closed while they were held.
    pub dropped: Option<usize>,
}

/// Message figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MsgStats {
    /// QoS of publications and subscriptions.
    pub qos: u8,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// Total publish rate asked for (messages/s); `None` for as fast as allowed.
    pub rate_limit: Option<f64>,
    /// In-flight window per publisher (QoS 1/2).
    pub inflight: usize,
    /// Slow consumer: messages per second each subscriber read at most (`--sub-rate`).
    pub sub_rate_limit: Option<f64>,
    /// When publishing started, seconds since the Unix epoch (to line up samples taken outside).
    pub started_unix_s: f64,
    /// Seconds the publishers published.
    pub publish_s: f64,
    /// Messages published.
    pub sent: u64,
    /// Messages published per second.
    pub sent_per_s: f64,
    /// Publications acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP).
    pub acked: u64,
    /// Messages received by subscribers, duplicates included.
    pub delivered: u64,
    /// Seconds from the start of publishing (for `sub`: from the first message received) to the
    /// last message received.
    pub delivery_s: f64,
    /// Messages delivered per second (`delivered / delivery_s`).
    pub delivered_per_s: f64,
    /// Deliveries expected (each subscriber's share of what was sent).
    pub expected: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries of a message already delivered.
    pub duplicates: u64,
    /// Deliveries with a lower sequence number than an earlier one from the same publisher.
    pub out_of_order: u64,
    /// Messages received that were not this run's benchmark payloads.
    pub foreign: u64,
    /// `sent` when losses are counted against what the publishers sent, `gaps` when counted
    /// from holes in the sequence numbers (publishers in another process).
    pub loss_counted_from: String,
    /// End-to-end latency, microseconds.
    pub latency_us: Option<Percentiles>,
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds; `None` when it is empty.
    pub fn from_ns(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Percentiles {
            count: h.len(),
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// Messages per second, `0` when no time passed.
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// A number with thousands separators: 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in microseconds, printed with a unit that keeps it short.
pub fn micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn percentiles_line(p: &Percentiles) -> String {
    format!(
        "p50 {}  p99 {}  p99.9 {}  max {}  (mean {}, {} samples)",
        micros(p.p50),
        micros(p.p99),
        micros(p.p999),
        micros(p.max),
        micros(p.mean),
        thousands(p.count)
    )
}

impl Report {
    /// The human summary, several lines.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} publisher(s), {} subscriber(s), MQTT {}, {}",
            self.scenario, self.publishers, self.subscribers, self.mqtt_version, self.broker
        );
        let c = &self.connections;
        let _ = writeln!(
            s,
            "  connect    {} of {} in {:.3} s ({:.0} conn/s), {} failed",
            thousands(c.established as u64),
            thousands(c.attempted as u64),
            c.elapsed_s,
            c.per_s,
            c.failed
        );
        if let Some(p) = &c.latency_us {
            let _ = writeln!(s, "  handshake  {}", percentiles_line(p));
        }
        if let (Some(held), Some(dropped)) = (c.held_s, c.dropped) {
            let _ = writeln!(
                s,
                "  held       {held:.1} s idle, {dropped} dropped by the broker"
            );
        }
        if let Some(m) = &self.messages {
            let rate = m
                .rate_limit
                .map_or("as fast as allowed".to_string(), |r| format!("{r} msg/s"));
            let _ = writeln!(
                s,
                "  load       QoS {}, {} B payload, {}, in-flight window {}{}",
                m.qos,
                m.payload_bytes,
                rate,
                m.inflight,
                m.sub_rate_limit
                    .map_or(String::new(), |r| format!(", subscribers read {r} msg/s"))
            );
            if self.publishers > 0 {
                let _ = writeln!(
                    s,
                    "  sent       {} in {:.2} s ({} msg/s), {} acknowledged",
                    thousands(m.sent),
                    m.publish_s,
                    thousands(m.sent_per_s as u64),
                    thousands(m.acked)
                );
            }
            if self.subscribers > 0 {
                let _ = writeln!(
                    s,
                    "  delivered  {} in {:.2} s ({} msg/s) of {} expected",
                    thousands(m.delivered),
                    m.delivery_s,
                    thousands(m.delivered_per_s as u64),
                    thousands(m.expected)
                );
                let _ = writeln!(
                    s,
                    "  checked    {} lost (from {}), {} duplicates, {} out of order, {} foreign",
                    thousands(m.lost),
                    m.loss_counted_from,
                    thousands(m.duplicates),
                    thousands(m.out_of_order),
                    thousands(m.foreign)
                );
                if let Some(p) = &m.latency_us {
                    let _ = writeln!(s, "  latency    {}", percentiles_line(p));
                }
            }
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error      {e}");
        }
        s
    }
}

/// Counters shared by every connection task, read by the progress line and the drain phase.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages published.
    pub sent: AtomicU64,
    /// Messages received by subscribers.
    pub received: AtomicU64,
    /// Connections established.
    pub connected: AtomicU64,
}

/// The live progress line on standard error: hidden when it is not a terminal or with `--json`.
pub struct Progress {
    bar: ProgressBar,
    counters: Arc<Counters>,
    last: (Instant, u64, u64),
}

impl Progress {
    /// A progress line over `counters`, drawn only if `visible`.
    pub fn new(counters: Arc<Counters>, visible: bool) -> Progress {
        let bar = if visible {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>3} {wide_msg}") {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            counters,
            last: (Instant::now(), 0, 0),
        }
    }

    /// How often [`Progress::tick`] should be called.
    pub const INTERVAL: Duration = Duration::from_millis(500);

    /// Redraws with the rates since the previous redraw (calls closer together than half an
    /// [`Progress::INTERVAL`] are ignored); `phase` says what the run is doing.
    pub fn tick(&mut self, phase: &str) {
        if self.bar.is_hidden() {
            return;
        }
        let now = Instant::now();
        // Rates over less than half an interval would only flicker.
        if now.duration_since(self.last.0) < Self::INTERVAL / 2 {
            return;
        }
        let sent = self.counters.sent.load(Ordering::Relaxed);
        let received = self.counters.received.load(Ordering::Relaxed);
        let connected = self.counters.connected.load(Ordering::Relaxed);
        let secs = now.duration_since(self.last.0).as_secs_f64();
        let sent_rate = rate(sent.saturating_sub(self.last.1), secs) as u64;
        let recv_rate = rate(received.saturating_sub(self.last.2), secs) as u64;
        self.last = (now, sent, received);
        self.bar.set_message(format!(
            "{phase} | {} conn | sent {}/s ({}) | recv {}/s ({})",
            thousands(connected),
            thousands(sent_rate),
            thousands(sent),
            thousands(recv_rate),
            thousands(received)
        ));
        self.bar.tick();
    }

    /// Removes the line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn summary_shows_only_the_sides_that_ran() {
        let mut r = Report {
            scenario: "pub".into(),
            broker: "mqtt://127.0.0.1:1883".into(),
            mqtt_version: "3.1.1".into(),
            publishers: 2,
            subscribers: 0,
            connections: ConnStats::default(),
            messages: Some(MsgStats {
                sent: 1000,
                ..Default::default()
            }),
            errors: vec!["publisher 1: the broker closed the connection".into()],
        };
        let s = r.summary();
        assert!(s.contains("sent       1,000"), "{s}");
        assert!(!s.contains("delivered"), "{s}");
        assert!(s.contains("error      publisher 1"), "{s}");
        r.publishers = 0;
        r.subscribers = 1;
        let s = r.summary();
        assert!(!s.contains("sent "), "{s}");
        assert!(s.contains("delivered"), "{s}");
    }

    #[test]
    fn micros_picks_a_unit() {
        assert_eq!(micros(76.4), "76 µs");
        assert_eq!(micros(1500.0), "1.50 ms");
        assert_eq!(micros(2_500_000.0), "2.50 s");
    }
}
