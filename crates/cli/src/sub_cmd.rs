//! `tern sub`: subscribes and prints messages, with `mosquitto_sub`'s flags and byte-identical
//! output (`-v`, `-N`, `-F` with every specifier), plus `--json` (one JSON object per line).
//!
//! ```text
//! tern sub -h localhost -t 'sensors/#' -v
//! tern sub -t 'sensors/#' -T sensors/debug -C 10 -F '%I %t %p'
//! tern sub -L mqtts://broker:8883/alerts --cafile ca.pem --json
//! ```
//!
//! Exit status: 0 after `-C` messages, `--retained-only`'s first live message, `-E`, or Ctrl-C
//! (which sends DISCONNECT); 27 when `-W` times out, as mosquitto_sub; 1 for bad input or a
//! connection that fails.

mod cjson;
pub(crate) mod format;

use crate::client_opts::{self, ClientOpts, RawArgs};
use anyhow::{anyhow, bail};
use clap::Parser;
use format::{Stamp, Style};
use std::io::Write;
use std::process::ExitCode;
use tern_client::{ByteStr, Client, Message, QoS, ReasonCode, SubscriptionOptions};

/// Arguments of `tern sub` (captured raw; see [`SubCli`]).
pub type SubArgs = RawArgs;

/// `tern sub`'s flags, as mosquitto_sub's.
#[derive(Debug, Parser)]
#[command(
    name = "tern sub",
    about = "Subscribe to MQTT topics and print messages (mosquitto_sub's flags)",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct SubCli {
    #[command(flatten)]
    common: ClientOpts,
    /// Topic filter to subscribe to; may be repeated.
    #[arg(short = 't', long = "topic")]
    topics: Vec<String>,
    /// Topic filter whose messages are not printed; may be repeated.
    #[arg(short = 'T', long = "filter-out")]
    filter_out: Vec<String>,
    /// Topic filter to unsubscribe from after subscribing; may be repeated.
    #[arg(short = 'U', long = "unsubscribe")]
    unsubscribe: Vec<String>,
    /// QoS of the subscriptions: 0, 1 or 2. Defaults to 0.
    #[arg(short = 'q', long = "qos", value_parser = client_opts::parse_qos)]
    qos: Option<QoS>,
    /// Print the topic before the payload.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Exit after printing this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Exit (status 27) after this many seconds.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// Do not print retained (stale) messages.
    #[arg(short = 'R', long = "no-retained")]
    no_retained: bool,
    /// Print only retained messages; exit at the first message that is not retained.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// Clear every retained message received (publish an empty retained message).
    #[arg(long = "remove-retained")]
    remove_retained: bool,
    /// Exit once the subscriptions are acknowledged.
    #[arg(short = 'E')]
    exit_after_subscribe: bool,
    /// Do not print an end of line after each message.
    #[arg(short = 'N')]
    no_eol: bool,
    /// Output format (mosquitto_sub's -F specifiers).
    #[arg(short = 'F', long = "format", allow_hyphen_values = true)]
    format: Option<String>,
    /// Print %j / %J JSON formatted rather than minimised.
    #[arg(long = "pretty")]
    pretty: bool,
    /// Print each message as one JSON object per line.
    #[arg(long = "json")]
    json: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl client_opts::WithClientOpts for SubCli {
    fn common_mut(&mut self) -> &mut ClientOpts {
        &mut self.common
    }
}

/// Runs `tern sub`.
pub fn run(args: SubArgs) -> ExitCode {
    client_opts::run("sub", &args.args, subscribe)
}

/// What a message does to the run.
enum Next {
    Continue,
    Stop,
}

struct Printer {
    style: Style,
    eol: bool,
    filter_out: Vec<String>,
    no_retained: bool,
    retained_only: bool,
    remove_retained: bool,
    count: Option<u64>,
    printed: u64,
}

impl Printer {
    /// mosquitto_sub's message callback, in its order: --retained-only, -R, -T,
    /// --remove-retained, print, -C.
    async fn handle(&mut self, client: &Client, m: &Message) -> anyhow::Result<Next> {
        if self.retained_only && !m.retain {
            return Ok(Next::Stop);
        }
        if m.retain && self.no_retained {
            return Ok(Next::Continue);
        }
        if self
            .filter_out
            .iter()
            .any(|f| tern_codec::topic::matches(f, m.topic.as_str()))
        {
            return Ok(Next::Continue);
        }
        if self.remove_retained && m.retain {
            client
                .publish(m.topic.clone(), QoS::AtLeastOnce, true, bytes::Bytes::new())
                .await
                .map_err(|e| anyhow!("cannot remove the retained message on {}: {e}", m.topic))?;
        }
        let mut out = Vec::with_capacity(m.payload.len() + 64);
        let mut err = Vec::new();
        format::print_message(&self.style, self.eol, m, &Stamp::now(), &mut out, &mut err);
        {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            lock.write_all(&out)?;
            lock.flush()?;
        }
        if !err.is_empty() {
            let _ = std::io::stderr().write_all(&err);
        }
        self.printed += 1;
        if self.count.is_some_and(|c| self.printed >= c) {
            return Ok(Next::Stop);
        }
        Ok(Next::Continue)
    }
}

async fn subscribe(cli: SubCli) -> anyhow::Result<ExitCode> {
    let mut connection = cli.common.build("tern-sub-")?;
    let mut topics = cli.topics.clone();
    if let Some(t) = connection.url_topic.take() {
        topics.push(t);
    }
    if topics.is_empty() {
        bail!("give a topic filter to subscribe to (-t)");
    }
    for t in topics.iter().chain(&cli.filter_out).chain(&cli.unsubscribe) {
        tern_codec::topic::validate_topic_filter(t)
            .map_err(|e| anyhow!("invalid subscription topic {t:?}: {e}"))?;
    }
    if cli.no_retained && cli.retained_only {
        bail!("combining -R and --retained-only makes no sense");
    }
    if cli.count == Some(0) {
        bail!("-C needs a count of at least 1");
    }
    if cli.json && cli.format.is_some() {
        bail!("--json and -F cannot be used together");
    }
    let style = Style::from_flags(cli.json, cli.format.as_deref(), cli.pretty, cli.verbose)
        .map_err(|e| anyhow!("{e}"))?;
    let qos = cli.qos.unwrap_or_default();
    let (client, mut messages) =
        client_opts::connect(connection.options.clone(), cli.common.debug, true).await?;

    let filters: Vec<(ByteStr, SubscriptionOptions)> = topics
        .iter()
        .map(|t| {
            (
                ByteStr::from(t.as_str()),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )
        })
        .collect();
    let properties = connection.properties.subscribe.clone();
    let codes = client
        .subscribe_many(filters, properties)
        .await
        .map_err(|e| anyhow!("subscribe failed: {e}"))?;
    for (topic, code) in topics.iter().zip(&codes) {
        if code.is_error() && !cli.common.quiet {
            eprintln!("Warning: subscription to {topic} denied: {code}");
        }
    }
    if codes.iter().all(|c| c.is_error()) {
        bail!("all subscription requests were denied");
    }
    if !cli.unsubscribe.is_empty() {
        let filters = cli
            .unsubscribe
            .iter()
            .map(|t| ByteStr::from(t.as_str()))
            .collect();
        client
            .unsubscribe(filters)
            .await
            .map_err(|e| anyhow!("unsubscribe failed: {e}"))?;
    }
    let disconnect_expiry = connection.properties.disconnect.session_expiry_interval;
    if cli.exit_after_subscribe {
        let _ = client
            .disconnect_with(ReasonCode::NORMAL_DISCONNECTION, disconnect_expiry)
            .await;
        return Ok(ExitCode::SUCCESS);
    }

    let mut printer = Printer {
        style,
        eol: !cli.no_eol,
        filter_out: cli.filter_out.clone(),
        no_retained: cli.no_retained,
        retained_only: cli.retained_only,
        remove_retained: cli.remove_retained,
        count: cli.count,
        printed: 0,
    };
    let timed_out = client_opts::timeout(cli.timeout);
    tokio::pin!(timed_out);
    let outcome = loop {
        tokio::select! {
            m = messages.recv() => match m {
                Some(m) => match printer.handle(&client, &m).await {
                    Ok(Next::Continue) => {}
                    Ok(Next::Stop) => break Ok(ExitCode::SUCCESS),
                    Err(e) => break Err(e),
                },
                None => break Err(closed(&client)),
            },
            () = &mut timed_out => {
                if !cli.common.quiet {
                    eprintln!("Timed out");
                }
                break Ok(ExitCode::from(27));
            }
            () = client_opts::interrupted() => break Ok(ExitCode::SUCCESS),
        }
    };
    let _ = client
        .disconnect_with(ReasonCode::NORMAL_DISCONNECTION, disconnect_expiry)
        .await;
    outcome
}

/// Why the client stopped for good, for the user.
fn closed(client: &Client) -> anyhow::Error {
    match client.state() {
        tern_client::ConnectionState::Closed(reason) => anyhow!("connection closed: {reason}"),
        other => anyhow!("connection closed ({other:?})"),
    }
}
