//! `tern rr`: MQTT 5 request/response, as `mosquitto_rr`: subscribes to the response topic,
//! publishes the request with a Response Topic (and the Correlation Data given with `-D`),
//! prints the first response like `tern sub` would, and exits.
//!
//! ```text
//! tern rr -t service/time -e replies/me -m now -W 5 -v
//! ```

use crate::client_opts::{self, ClientOpts, RawArgs};
use crate::sub_cmd::format::{self, Stamp, Style};
use anyhow::{anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tern_client::{ByteStr, ProtocolVersion, Publish, QoS, ReasonCode};

/// Arguments of `tern rr` (captured raw; see [`RrCli`]).
pub type RrArgs = RawArgs;

/// `tern rr`'s flags, as mosquitto_rr's.
#[derive(Debug, Parser)]
#[command(
    name = "tern rr",
    about = "MQTT v5 request/response (mosquitto_rr's flags)",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct RrCli {
    #[command(flatten)]
    common: ClientOpts,
    /// Request topic.
    #[arg(short = 't', long = "topic")]
    topic: Option<String>,
    /// Response topic (subscribed to, and sent as the Response Topic property).
    #[arg(short = 'e', long = "response-topic")]
    response_topic: Option<String>,
    /// Request payload.
    #[arg(short = 'm', long = "message", allow_hyphen_values = true)]
    message: Option<String>,
    /// Send the contents of a file as the request.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Read the request from stdin.
    #[arg(short = 's', long = "stdin-file")]
    stdin_file: bool,
    /// Send an empty request.
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// QoS of the request and the response subscription.
    #[arg(short = 'q', long = "qos", value_parser = client_opts::parse_qos)]
    qos: Option<QoS>,
    /// Retain the request.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Give up (status 27) after this many seconds.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// Print the topic before the payload.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Do not print an end of line.
    #[arg(short = 'N')]
    no_eol: bool,
    /// Output format (as tern sub -F).
    #[arg(short = 'F', long = "format", allow_hyphen_values = true)]
    format: Option<String>,
    /// Print %j / %J JSON formatted rather than minimised.
    #[arg(long = "pretty")]
    pretty: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl client_opts::WithClientOpts for RrCli {
    fn common_mut(&mut self) -> &mut ClientOpts {
        &mut self.common
    }
}

/// Runs `tern rr`.
pub fn run(args: RrArgs) -> ExitCode {
    client_opts::run("rr", &args.args, request)
}

async fn request(mut cli: RrCli) -> anyhow::Result<ExitCode> {
    // mosquitto_rr speaks MQTT v5 unless told otherwise; request/response needs it.
    let version = *cli.common.version.get_or_insert(ProtocolVersion::V5);
    if !version.is_v5() {
        bail!("request/response needs MQTT v5 (-V mqttv5)");
    }
    let mut connection = cli.common.build("tern-rr-")?;
    let topic = cli
        .topic
        .clone()
        .or(connection.url_topic.take())
        .ok_or_else(|| anyhow!("a request topic (-t) is needed"))?;
    let response_topic = cli
        .response_topic
        .clone()
        .ok_or_else(|| anyhow!("a response topic (-e) is needed"))?;
    tern_codec::topic::validate_topic_name(&topic)
        .map_err(|e| anyhow!("invalid request topic {topic:?}: {e}"))?;
    tern_codec::topic::validate_topic_name(&response_topic)
        .map_err(|e| anyhow!("invalid response topic {response_topic:?}: {e}"))?;
    let sources = [
        cli.message.is_some(),
        cli.file.is_some(),
        cli.stdin_file,
        cli.null_message,
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if sources != 1 {
        bail!("give exactly one request payload: -m, -f, -s or -n");
    }
    let payload = if let Some(m) = &cli.message {
        Bytes::from(m.clone().into_bytes())
    } else if let Some(path) = &cli.file {
        client_opts::read_file(path)?
    } else if cli.stdin_file {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Bytes::from(buf)
    } else {
        Bytes::new()
    };
    let style = Style::from_flags(false, cli.format.as_deref(), cli.pretty, cli.verbose)
        .map_err(|e| anyhow!("{e}"))?;
    let qos = cli.qos.unwrap_or_default();
    let (client, mut messages) =
        client_opts::connect(connection.options.clone(), cli.common.debug, false).await?;
    client
        .subscribe(response_topic.as_str(), qos)
        .await
        .map_err(|e| anyhow!("cannot subscribe to the response topic: {e}"))?;
    let mut properties = connection.properties.publish.clone();
    properties.response_topic = Some(ByteStr::from(response_topic.as_str()));
    client
        .publish_message(Publish {
            topic: ByteStr::from(topic.as_str()),
            qos,
            retain: cli.retain,
            payload,
            properties: properties.into(),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("request publish failed: {e}"))?;

    let timed_out = client_opts::timeout(cli.timeout);
    let outcome = tokio::select! {
        m = messages.recv() => match m {
            Some(m) => {
                let mut out = Vec::new();
                let mut err = Vec::new();
                format::print_message(&style, !cli.no_eol, &m, &Stamp::now(), &mut out, &mut err);
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&out)?;
                stdout.flush()?;
                Ok(ExitCode::SUCCESS)
            }
            None => Err(anyhow!("the connection was closed before a response arrived")),
        },
        () = timed_out => {
            if !cli.common.quiet {
                eprintln!("Timed out");
            }
            Ok(ExitCode::from(27))
        }
        () = client_opts::interrupted() => Ok(ExitCode::SUCCESS),
    };
    let _ = client
        .disconnect_with(ReasonCode::NORMAL_DISCONNECTION, None)
        .await;
    outcome
}
