//! `tern pub`: publishes one message (or one per stdin line, or the same one repeatedly), with
//! `mosquitto_pub`'s flags. Exits 0 only when every message was delivered as its QoS promises:
//! written for QoS 0, PUBACK for QoS 1, PUBCOMP for QoS 2.
//!
//! ```text
//! tern pub -h localhost -t sensors/t1 -m 21.5 -q 1
//! tern pub -L mqtt://user:pass@broker:1883/sensors/t1 -f reading.json -V mqttv5 -D publish content-type application/json
//! sensor-reader | tern pub -t sensors/stream -l -q 2
//! ```

use crate::client_opts::{self, ClientOpts, RawArgs};
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tern_client::{ByteStr, Client, Publish, QoS};

/// Arguments of `tern pub` (captured raw; see [`PubCli`]).
pub type PubArgs = RawArgs;

/// `tern pub`'s flags, as mosquitto_pub's.
#[derive(Debug, Parser)]
#[command(
    name = "tern pub",
    about = "Publish MQTT messages (mosquitto_pub's flags)",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct PubCli {
    #[command(flatten)]
    common: ClientOpts,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic")]
    topic: Option<String>,
    /// Message payload.
    #[arg(short = 'm', long = "message", allow_hyphen_values = true)]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Read the message from stdin, sending the entire input as one message.
    #[arg(short = 's', long = "stdin-file")]
    stdin_file: bool,
    /// Read messages from stdin, one message per line.
    #[arg(short = 'l', long = "stdin-line")]
    stdin_line: bool,
    /// Send a null (zero length) message.
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// QoS of the messages: 0, 1 or 2. Defaults to 0.
    #[arg(short = 'q', long = "qos", value_parser = client_opts::parse_qos)]
    qos: Option<QoS>,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Publish the message N times (with -m, -f, -s or -n).
    #[arg(long = "repeat", default_value_t = 1)]
    repeat: u32,
    /// Seconds to wait between repeated publishes (fractions allowed).
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Where the payload comes from.
enum Source {
    Fixed(Bytes),
    Lines,
}

impl client_opts::WithClientOpts for PubCli {
    fn common_mut(&mut self) -> &mut ClientOpts {
        &mut self.common
    }
}

/// Runs `tern pub`.
pub fn run(args: PubArgs) -> ExitCode {
    client_opts::run("pub", &args.args, |cli| async {
        publish(cli).await.map(|()| ExitCode::SUCCESS)
    })
}

async fn publish(cli: PubCli) -> anyhow::Result<()> {
    let mut connection = cli.common.build("tern-pub-")?;
    let topic = cli
        .topic
        .clone()
        .or(connection.url_topic.take())
        .ok_or_else(|| {
            anyhow!("both a topic (-t) and a message (-m, -f, -s, -l or -n) are needed")
        })?;
    tern_codec::topic::validate_topic_name(&topic)
        .map_err(|e| anyhow!("invalid publish topic {topic:?}: {e}"))?;
    let sources = [
        cli.message.is_some(),
        cli.file.is_some(),
        cli.stdin_file,
        cli.stdin_line,
        cli.null_message,
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if sources == 0 {
        bail!("both a topic (-t) and a message (-m, -f, -s, -l or -n) are needed");
    }
    if sources > 1 {
        bail!("only one of -m, -f, -s, -l and -n can be given");
    }
    if !cli.repeat_delay.is_finite() || cli.repeat_delay < 0.0 {
        bail!("--repeat-delay must be a number of seconds, 0 or more");
    }
    if cli.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let source = if let Some(m) = &cli.message {
        Source::Fixed(Bytes::from(m.clone().into_bytes()))
    } else if let Some(path) = &cli.file {
        Source::Fixed(client_opts::read_file(path)?)
    } else if cli.stdin_file {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the message from stdin")?;
        Source::Fixed(Bytes::from(buf))
    } else if cli.stdin_line {
        Source::Lines
    } else {
        Source::Fixed(Bytes::new())
    };

    let qos = cli.qos.unwrap_or_default();
    let template = Publish {
        topic: ByteStr::from(topic.as_str()),
        qos,
        retain: cli.retain,
        properties: connection.properties.publish.clone().into(),
        ..Default::default()
    };
    let mut options = connection.options.clone();
    // mosquitto_pub does not retry a lost connection: neither do we, so that the exit status
    // tells the truth about every message.
    options.reconnect.enabled = false;
    let (client, _messages) = client_opts::connect(options, cli.common.debug, false).await?;

    let result = tokio::select! {
        r = send_all(&client, &template, source, cli.repeat, cli.repeat_delay) => r,
        () = client_opts::interrupted() => Ok(()),
    };
    let disconnect = &connection.properties.disconnect;
    let _ = client
        .disconnect_with(
            tern_client::ReasonCode::NORMAL_DISCONNECTION,
            disconnect.session_expiry_interval,
        )
        .await;
    result
}

async fn send_all(
    client: &Client,
    template: &Publish,
    source: Source,
    repeat: u32,
    delay: f64,
) -> anyhow::Result<()> {
    match source {
        Source::Fixed(payload) => {
            for i in 0..repeat {
                if i > 0 && delay > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(delay)).await;
                }
                send(client, template, payload.clone()).await?;
            }
        }
        Source::Lines => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(64);
            std::thread::spawn(move || {
                let stdin = std::io::stdin();
                let mut lock = stdin.lock();
                loop {
                    let mut line = Vec::new();
                    match lock.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => {
                            if line.last() == Some(&b'\n') {
                                line.pop();
                                if line.last() == Some(&b'\r') {
                                    line.pop();
                                }
                            }
                            if tx.blocking_send(Ok(line)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            break;
                        }
                    }
                }
            });
            while let Some(line) = rx.recv().await {
                let line = line.context("cannot read stdin")?;
                send(client, template, Bytes::from(line)).await?;
            }
        }
    }
    Ok(())
}

async fn send(client: &Client, template: &Publish, payload: Bytes) -> anyhow::Result<()> {
    let mut publish = template.clone();
    publish.payload = payload;
    let outcome = client
        .publish_message(publish)
        .await
        .map_err(|e| anyhow!("publish to {:?} failed: {e}", template.topic.as_str()))?;
    tracing::debug!(packet_id = outcome.packet_id, reason = %outcome.reason_code, "delivered");
    Ok(())
}
