//! `tern bench`: a load generator and latency meter for MQTT brokers, in the spirit of
//! emqtt-bench and `mqttx bench`. Scenarios: `pub`, `sub`, `conn`, `latency`, `fanin`, `fanout`,
//! `pairs`, `shared` (one file each); see docs/bench.md.
//!
//! It is built on `tern-codec` and tokio directly, not on `tern-client`: a benchmark client must
//! cost less than the broker it loads, so each connection is one task with a read buffer decoded
//! incrementally, a write buffer flushed in as few system calls as possible and TCP_NODELAY
//! ([`driver`]). Every message carries its publisher, sequence number and send time ([`payload`]),
//! so the receiving side checks loss, duplicates and order and measures end-to-end latency
//! ([`stats`]).
//!
//! Not for: conformance testing (the interop suite does that). TLS and WebSocket go through
//! `tern-client`'s transport only (see [`driver::tunnel`]), never through its MQTT engine.
//! Every run is bounded: a duration or a count, bounded drain phases, and a hard wall-clock cap.

mod conn;
mod driver;
mod engine;
mod fanin;
mod fanout;
mod latency;
mod pairs;
mod payload;
mod publish;
mod report;
mod shared;
mod stats;
mod subscribe;
mod topic;

use anyhow::{Context, anyhow, bail};
use clap::{ArgAction, Subcommand};
use driver::Endpoint;
use engine::{MsgOpts, NetOpts, Plan};
use report::Report;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tern_codec::{ProtocolVersion, QoS};

/// Arguments of `tern bench`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Load-test an MQTT broker: throughput, latency, loss and connection cost",
    long_about = "Load-test an MQTT broker: throughput, latency, loss and connection cost.\n\n\
                  Every run is bounded (-d duration or -n count) and stops by itself. \
                  See docs/bench.md."
)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Publishers only (C clients publishing to a topic pattern): publish rate and acknowledgements.
    #[command(disable_help_flag = true)]
    Pub(publish::Args),
    /// Subscribers only, for publishers in another process: receive rate, gaps, latency.
    #[command(disable_help_flag = true)]
    Sub(subscribe::Args),
    /// C idle connections opened at a given rate and held: connect rate and handshake latency.
    #[command(disable_help_flag = true)]
    Conn(conn::Args),
    /// End-to-end latency at a fixed rate (1,000 msg/s, QoS 1 by default) over N pairs.
    #[command(disable_help_flag = true)]
    Latency(latency::Args),
    /// P publishers to one wildcard subscriber.
    #[command(disable_help_flag = true)]
    Fanin(fanin::Args),
    /// One publisher to S subscribers of the same topic.
    #[command(disable_help_flag = true)]
    Fanout(fanout::Args),
    /// N one-to-one publisher/subscriber pairs.
    #[command(disable_help_flag = true)]
    Pairs(pairs::Args),
    /// P publishers to a shared subscription ($share) of S members.
    #[command(disable_help_flag = true)]
    Shared(shared::Args),
}

impl Scenario {
    fn net(&self) -> &NetArgs {
        match self {
            Scenario::Pub(a) => &a.net,
            Scenario::Sub(a) => &a.net,
            Scenario::Conn(a) => &a.net,
            Scenario::Latency(a) => &a.net,
            Scenario::Fanin(a) => &a.net,
            Scenario::Fanout(a) => &a.net,
            Scenario::Pairs(a) => &a.net,
            Scenario::Shared(a) => &a.net,
        }
    }
}

/// Where the broker is and how to connect; common to every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct NetArgs {
    /// Broker host name or address.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Broker URL (overrides -h and -p): `mqtt://HOST:PORT`, or `mqtts://` (TLS), `ws://`,
    /// `wss://` (WebSocket, path `/mqtt` unless given).
    #[arg(short = 'L', long)]
    pub url: Option<String>,
    /// TLS: PEM file of the CA certificates to trust (default: the system's).
    #[arg(long)]
    pub cafile: Option<std::path::PathBuf>,
    /// TLS: PEM client certificate, for mutual TLS (with --key).
    #[arg(long)]
    pub cert: Option<std::path::PathBuf>,
    /// TLS: PEM private key of --cert.
    #[arg(long)]
    pub key: Option<std::path::PathBuf>,
    /// TLS: accept any server certificate (tests only: no protection at all).
    #[arg(long)]
    pub insecure: bool,
    /// MQTT version: 31 (3.1), 311 (3.1.1) or 5.
    #[arg(short = 'V', long = "mqtt-version", default_value = "311", value_parser = parse_version)]
    pub version: ProtocolVersion,
    /// Connections opened per second, or `unlimited`.
    #[arg(long, value_parser = parse_rate, default_value = "unlimited")]
    pub connect_rate: Rate,
    /// Handshakes (CONNECT to CONNACK) in progress at once.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Print one JSON object on standard output instead of the summary (no progress line).
    #[arg(long)]
    pub json: bool,
    /// Hard wall-clock limit of the whole run (default: duration + 115 s; with -n alone 10 min;
    /// conn: hold + 5 min).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// What to publish; common to the scenarios that publish. Scenario defaults apply to the options
/// left out.
#[derive(Debug, Clone, clap::Args)]
pub struct MsgArgs {
    /// QoS of publications and subscriptions (0, 1 or 2).
    #[arg(short = 'q', long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// Payload size in bytes (at least 22: the sequence number and send time).
    #[arg(short = 's', long, default_value_t = 64)]
    pub size: usize,
    /// Total messages per second over all publishers, or `unlimited`.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<Rate>,
    /// In-flight window per publisher: unacknowledged QoS 1/2 publications (capped by the
    /// broker's Receive Maximum in MQTT 5).
    #[arg(long, default_value_t = 100)]
    pub inflight: usize,
    /// How long to publish (`10s`, `500ms`, `2m`; plain numbers are seconds). Default 10s.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Messages per publisher; the run ends at whichever of -d and -n comes first.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Topic pattern of the publishers; `%i` is the publisher (or pair) index.
    #[arg(short = 't', long)]
    pub topic: Option<String>,
    /// Slow consumer: messages per second each subscriber reads at most, so that the broker must
    /// queue or drop the rest (what is still queued when the drain ends counts as lost).
    #[arg(long, value_parser = parse_rate)]
    pub sub_rate: Option<Rate>,
    /// Subscribers keep a persistent session (MQTT 3.x: clean session 0; MQTT 5: Session
    /// Expiry Interval of one hour), so a broker with persistence stores what it routes to
    /// them until they acknowledge it. The session stays in the broker after the run.
    #[arg(long)]
    pub persistent: bool,
}

/// A message or connection rate; `None` means as fast as allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub Option<f64>);

/// Default publishing duration when neither `-d` nor `-n` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Largest payload accepted by `-s`.
const MAX_PAYLOAD: usize = 1024 * 1024;

impl MsgArgs {
    /// The options with this scenario's defaults filled in.
    fn resolve(&self, default_qos: QoS, default_rate: Rate) -> anyhow::Result<MsgOpts> {
        let qos = match self.qos {
            None => default_qos,
            Some(q) => QoS::from_u8(q).ok_or_else(|| anyhow!("invalid QoS {q}: use 0, 1 or 2"))?,
        };
        if self.size < payload::HEADER_LEN || self.size > MAX_PAYLOAD {
            bail!(
                "invalid payload size {}: use {} to {MAX_PAYLOAD} bytes (the first {} carry the \
                 sequence number and send time)",
                self.size,
                payload::HEADER_LEN,
                payload::HEADER_LEN
            );
        }
        let duration = match (self.duration, self.count) {
            (None, None) => Some(DEFAULT_DURATION),
            (d, _) => d,
        };
        Ok(MsgOpts {
            qos,
            payload_size: self.size,
            rate: self.rate.unwrap_or(default_rate).0,
            inflight: self.inflight.clamp(1, 65_535),
            duration,
            count: self.count,
            sub_rate: self.sub_rate.and_then(|r| r.0),
            persistent: self.persistent,
        })
    }

    /// The topic pattern, or the scenario's default.
    fn topic_or(&self, default: &str) -> String {
        self.topic.clone().unwrap_or_else(|| default.to_string())
    }
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "3" | "31" | "3.1" => Ok(ProtocolVersion::V31),
        "4" | "311" | "3.1.1" => Ok(ProtocolVersion::V311),
        "5" | "50" | "5.0" => Ok(ProtocolVersion::V5),
        _ => Err(format!("unknown MQTT version {s:?}: use 31, 311 or 5")),
    }
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    match s {
        "unlimited" | "max" | "0" => Ok(Rate(None)),
        _ => match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate(Some(r))),
            _ => Err(format!(
                "invalid rate {s:?}: a positive number per second, or `unlimited`"
            )),
        },
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?}: e.g. 10s, 500ms, 2m or 30");
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = num.trim().parse().map_err(|_| err())?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(err()),
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 1.0e7) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// True for the URL schemes opened by `tern-client`'s transport (TLS, WebSocket).
fn is_tunnelled(url: &str) -> bool {
    matches!(
        url.split_once("://").map(|(scheme, _)| scheme),
        Some("mqtts" | "ssl" | "ws" | "wss")
    )
}

/// Splits a plain TCP broker URL into `host:port`.
fn parse_url(url: &str) -> anyhow::Result<String> {
    let rest = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => rest,
        Some((scheme @ ("mqtts" | "ssl" | "ws" | "wss"), _)) => {
            bail!("{scheme}:// goes through tern-client's transport, not parse_url")
        }
        Some((scheme, _)) => bail!(
            "unknown URL scheme {scheme:?} in {url:?}: use mqtt://, mqtts://, ws:// or wss://"
        ),
        None => url,
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        bail!("no host in URL {url:?}: use mqtt://HOST:PORT");
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:1883`.
        let (_, after) = bracketed
            .split_once(']')
            .ok_or_else(|| anyhow!("unclosed '[' in URL {url:?}"))?;
        return Ok(if after.starts_with(':') {
            authority.to_string()
        } else {
            format!("{authority}:1883")
        });
    }
    Ok(match authority.matches(':').count() {
        0 => format!("{authority}:1883"),
        1 => authority.to_string(),
        _ => format!("[{authority}]:1883"),
    })
}

impl NetArgs {
    /// Resolves the broker address; `keep_alive` is sent in CONNECT.
    async fn resolve(&self, keep_alive: u16) -> anyhow::Result<NetOpts> {
        let tunnel = match &self.url {
            Some(url) if is_tunnelled(url) => {
                let mut options = tern_client::ConnectOptions::from_url(url)
                    .with_context(|| format!("broker URL {url:?}"))?;
                options.tls.ca_file = self.cafile.clone();
                options.tls.client_cert = self.cert.clone();
                options.tls.client_key = self.key.clone();
                options.tls.insecure = self.insecure;
                if options.transport.is_tls() {
                    // Fail now, once, rather than at every connection.
                    tern_client::transport::tls_config(&options.tls)
                        .context("TLS settings (--cafile, --cert, --key)")?;
                }
                Some(std::sync::Arc::new(options))
            }
            _ => None,
        };
        let target = match (&self.url, &tunnel) {
            (_, Some(options)) if options.host.contains(':') => {
                format!("[{}]:{}", options.host, options.port)
            }
            (_, Some(options)) => format!("{}:{}", options.host, options.port),
            (Some(url), None) => parse_url(url)?,
            (None, None) if self.host.contains(':') && !self.host.starts_with('[') => {
                format!("[{}]:{}", self.host, self.port)
            }
            (None, None) => format!("{}:{}", self.host, self.port),
        };
        let addr = tokio::net::lookup_host(&target)
            .await
            .with_context(|| format!("resolving {target}"))?
            .next()
            .ok_or_else(|| anyhow!("{target} resolves to no address"))?;
        Ok(NetOpts {
            endpoint: Endpoint {
                addr,
                version: self.version,
                keep_alive,
                tunnel: tunnel.clone(),
            },
            url: match (&tunnel, &self.url) {
                (Some(_), Some(url)) => url.clone(),
                _ => format!("mqtt://{target}"),
            },
            connect_rate: self.connect_rate.0,
            connect_concurrency: self.connect_concurrency.max(1),
            progress: !self.json && std::io::stderr().is_terminal(),
        })
    }
}

/// Runs `tern bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    let net = args.scenario.net().clone();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(t) = net.threads {
        builder.worker_threads(t.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tern bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(execute(args.scenario));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            if net.json {
                let error = serde_json::json!({ "errors": [format!("{e:#}")] });
                println!("{error}");
            }
            eprintln!("tern bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if net.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("tern bench: cannot write the JSON report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.summary());
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Keep Alive of publish/subscribe connections: they send PINGREQ every [`engine::PING_EVERY`].
const KEEP_ALIVE: u16 = 60;
/// Time allowed for connecting everyone, in the hard cap.
const CONNECT_ALLOWANCE: Duration = Duration::from_secs(60);

async fn execute(scenario: Scenario) -> anyhow::Result<Report> {
    let timeout = scenario.net().timeout;
    if let Scenario::Conn(args) = &scenario {
        let net = args.net.resolve(conn::keep_alive(args)).await?;
        let cap = timeout.unwrap_or(CONNECT_ALLOWANCE * 5 + args.hold());
        return capped(cap, conn::run(args, &net)).await;
    }
    let net = scenario.net().resolve(KEEP_ALIVE).await?;
    let (plan, msg): (Plan, MsgOpts) = match &scenario {
        Scenario::Pub(a) => publish::plan(a)?,
        Scenario::Sub(a) => subscribe::plan(a)?,
        Scenario::Latency(a) => latency::plan(a)?,
        Scenario::Fanin(a) => fanin::plan(a)?,
        Scenario::Fanout(a) => fanout::plan(a)?,
        Scenario::Pairs(a) => pairs::plan(a)?,
        Scenario::Shared(a) => shared::plan(a)?,
        Scenario::Conn(_) => bail!("unreachable: conn is handled above"),
    };
    validate(&plan)?;
    let cap = timeout.unwrap_or(match msg.duration {
        Some(d) => {
            d + CONNECT_ALLOWANCE + engine::ACK_DRAIN + engine::DRAIN_MAX + Duration::from_secs(30)
        }
        None => Duration::from_secs(600),
    });
    capped(cap, engine::run_plan(plan, &net, &msg)).await
}

async fn capped(
    cap: Duration,
    run: impl Future<Output = anyhow::Result<Report>>,
) -> anyhow::Result<Report> {
    match tokio::time::timeout(cap, run).await {
        Ok(result) => result,
        Err(_) => bail!("hard time limit of {cap:?} reached: the run was aborted (see --timeout)"),
    }
}

/// Checks every topic and filter before connecting, so a typo is reported as such.
fn validate(plan: &Plan) -> anyhow::Result<()> {
    for t in &plan.publishers {
        tern_codec::topic::validate_topic_name(t)
            .map_err(|e| anyhow!("invalid topic {t:?} (see -t): {e}"))?;
    }
    for f in &plan.subscribers {
        tern_codec::topic::validate_topic_filter(f)
            .map_err(|e| anyhow!("invalid topic filter {f:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        bench: Scenario,
    }

    #[tokio::test]
    async fn a_run_that_overstays_is_cut_by_the_hard_cap() {
        let started = std::time::Instant::now();
        let never = std::future::pending::<anyhow::Result<Report>>();
        let err = capped(Duration::from_millis(50), never).await.unwrap_err();
        assert!(err.to_string().contains("hard time limit"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn rates_parse_and_unlimited_means_none() {
        assert_eq!(parse_rate("1000"), Ok(Rate(Some(1000.0))));
        assert_eq!(parse_rate("unlimited"), Ok(Rate(None)));
        assert_eq!(parse_rate("0"), Ok(Rate(None)));
        assert!(parse_rate("-3").is_err());
    }

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            parse_url("mqtt://localhost:1884").unwrap(),
            "localhost:1884"
        );
        assert_eq!(parse_url("tcp://10.0.0.1").unwrap(), "10.0.0.1:1883");
        assert_eq!(parse_url("mqtt://[::1]:1885/x").unwrap(), "[::1]:1885");
        assert_eq!(parse_url("mqtt://[::1]").unwrap(), "[::1]:1883");
        assert_eq!(parse_url("broker:99").unwrap(), "broker:99");
        assert!(parse_url("http://broker").is_err());
        assert!(is_tunnelled("mqtts://broker:8883"));
        assert!(is_tunnelled("wss://broker/mqtt"));
        assert!(!is_tunnelled("mqtt://broker"));
    }

    #[test]
    fn short_h_is_host_not_help() {
        let cli = Cli::try_parse_from([
            "bench", "fanin", "-h", "broker", "-p", "1999", "-V", "5", "-q", "1", "-s", "100",
            "--rate", "5000", "-d", "3s", "-P", "6",
        ])
        .unwrap();
        let Scenario::Fanin(a) = cli.bench else {
            panic!("not fanin")
        };
        assert_eq!(a.net.host, "broker");
        assert_eq!(a.net.port, 1999);
        assert_eq!(a.net.version, ProtocolVersion::V5);
        let (plan, msg) = fanin::plan(&a).unwrap();
        assert_eq!(plan.publishers.len(), 6);
        assert_eq!(msg.qos, QoS::AtLeastOnce);
        assert_eq!(msg.rate, Some(5000.0));
        assert_eq!(msg.duration, Some(Duration::from_secs(3)));
    }

    #[test]
    fn scenario_defaults() {
        let cli = Cli::try_parse_from(["bench", "latency"]).unwrap();
        let Scenario::Latency(a) = cli.bench else {
            panic!("not latency")
        };
        let (plan, msg) = latency::plan(&a).unwrap();
        assert_eq!(msg.qos, QoS::AtLeastOnce);
        assert_eq!(msg.rate, Some(1000.0));
        assert_eq!(msg.duration, Some(DEFAULT_DURATION));
        assert_eq!(plan.publishers, vec!["bench/latency/0".to_string()]);
        assert_eq!(plan.subscribers, plan.publishers);

        let cli = Cli::try_parse_from(["bench", "fanout", "-n", "100"]).unwrap();
        let Scenario::Fanout(a) = cli.bench else {
            panic!("not fanout")
        };
        let (plan, msg) = fanout::plan(&a).unwrap();
        assert_eq!(msg.duration, None, "-n alone bounds the run");
        assert_eq!(msg.count, Some(100));
        assert_eq!(plan.subscribers.len(), 8);
        assert_eq!(plan.groups.len(), 8);
    }

    #[test]
    fn shared_and_pairs_plans_expect_the_right_publishers() {
        let cli = Cli::try_parse_from(["bench", "shared", "-P", "3", "-S", "2"]).unwrap();
        let Scenario::Shared(a) = cli.bench else {
            panic!("not shared")
        };
        let (plan, _) = shared::plan(&a).unwrap();
        assert_eq!(plan.subscribers, vec!["$share/bench/bench/shared/#"; 2]);
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.groups[0].members, vec![0, 1]);
        assert_eq!(plan.groups[0].expected_from, vec![0, 1, 2]);
        validate(&plan).unwrap();

        let cli = Cli::try_parse_from(["bench", "pairs", "-N", "3", "-t", "p/%i/x"]).unwrap();
        let Scenario::Pairs(a) = cli.bench else {
            panic!("not pairs")
        };
        let (plan, _) = pairs::plan(&a).unwrap();
        assert_eq!(plan.publishers[2], "p/2/x");
        assert_eq!(plan.subscribers[2], "p/2/x");
        assert_eq!(plan.groups[2].expected_from, vec![2]);
    }

    #[test]
    fn bad_topics_and_payload_sizes_are_refused_before_connecting() {
        let cli = Cli::try_parse_from(["bench", "fanin", "-t", "a/#/%i"]).unwrap();
        let Scenario::Fanin(a) = cli.bench else {
            panic!("not fanin")
        };
        let (plan, _) = fanin::plan(&a).unwrap();
        assert!(validate(&plan).is_err());
        let cli = Cli::try_parse_from(["bench", "fanin", "-s", "10"]).unwrap();
        let Scenario::Fanin(a) = cli.bench else {
            panic!("not fanin")
        };
        assert!(fanin::plan(&a).is_err());
    }
}
