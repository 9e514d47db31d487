//! Options shared by `tern pub`, `tern sub` and `tern rr`, spelled as in `mosquitto_pub` /
//! `mosquitto_sub` (`-h` is the host, not help), and their translation into
//! [`tern_client::ConnectOptions`] plus the v5 properties given with `-D`.
//!
//! The three commands capture their raw arguments in `main` and parse them here, so that a bad
//! flag gives one clear line on stderr and exit status 1, as the Mosquitto tools do.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tern_client::{
    ByteStr, Client, ConnectOptions, LastWill, Messages, ProtocolVersion, PublishProperties, QoS,
    SubscribeProperties, Transport, WillProperties,
};
use tern_codec::{ConnectProperties, DisconnectProperties, UnsubscribeProperties};

/// Raw arguments of a client subcommand, parsed by the subcommand itself.
#[derive(Debug, clap::Args)]
pub struct RawArgs {
    /// Options as for mosquitto_pub / mosquitto_sub / mosquitto_rr; see `--help`.
    #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// A command whose flags include [`ClientOpts`].
pub trait WithClientOpts {
    /// The shared options.
    fn common_mut(&mut self) -> &mut ClientOpts;
}

/// Takes `-D command identifier value` (four words for `user-property`) out of `args`, as
/// mosquitto's clients read them.
fn take_properties(args: &[String]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut rest = Vec::new();
    let mut properties = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "-D" || arg == "--property" {
            let n = if args.get(i + 2).is_some_and(|id| id == "user-property") {
                4
            } else {
                3
            };
            let Some(group) = args.get(i + 1..i + 1 + n) else {
                return Err(format!("{arg} needs a command, an identifier and a value"));
            };
            properties.push(group.to_vec());
            i += 1 + n;
        } else {
            rest.push(arg.clone());
            i += 1;
        }
    }
    Ok((rest, properties))
}

/// Parses `args` as `T`; `--help` prints help (exit 0), anything wrong prints one line (exit 1).
pub fn parse<T: Parser + WithClientOpts>(name: &str, args: &[String]) -> Result<T, ExitCode> {
    let (args, properties) = match take_properties(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("Error: {e}. Use 'tern {name} --help' to see usage.");
            return Err(ExitCode::from(1));
        }
    };
    let argv = std::iter::once(name.to_owned()).chain(args);
    match T::try_parse_from(argv) {
        Ok(mut t) => {
            t.common_mut().properties = properties;
            Ok(t)
        }
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return Err(ExitCode::SUCCESS);
            }
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("Error: {line}. Use 'tern {name} --help' to see usage.");
            Err(ExitCode::from(1))
        }
    }
}

/// Runs a client command: parses `args` as `T`, starts the runtime and runs `command` on it,
/// reporting a failure on one line (exit status 1) unless `-q`.
pub fn run<T, F>(name: &str, args: &[String], command: impl FnOnce(T) -> F) -> ExitCode
where
    T: Parser + WithClientOpts,
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let mut cli: T = match parse(name, args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let common = cli.common_mut();
    init_debug(common.debug);
    let quiet = common.quiet;
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => return fail(quiet, &e),
    };
    match runtime.block_on(command(cli)) {
        Ok(code) => code,
        Err(e) => fail(quiet, &e),
    }
}

/// Reports an error on one line, as `Error: ...`, and returns exit status 1.
pub fn fail(quiet: bool, error: &anyhow::Error) -> ExitCode {
    if !quiet {
        let chain: Vec<String> = error.chain().map(|e| e.to_string()).collect();
        eprintln!("Error: {}", chain.join(": "));
    }
    ExitCode::from(1)
}

/// Parses a QoS: 0, 1 or 2.
pub fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("invalid QoS {s:?}: must be 0, 1 or 2"))
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "mqttv31" | "31" => Ok(ProtocolVersion::V31),
        "mqttv311" | "311" => Ok(ProtocolVersion::V311),
        "mqttv5" | "5" => Ok(ProtocolVersion::V5),
        _ => Err(format!(
            "invalid protocol version {s:?}: use mqttv5, mqttv311 or mqttv31 (or 5, 311, 31)"
        )),
    }
}

/// Connection options common to the client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// MQTT host to connect to. Defaults to localhost.
    #[arg(short = 'h', long = "host")]
    pub host: Option<String>,
    /// Network port. Defaults to 1883, or 8883 with TLS.
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// Broker URL: mqtt(s)://[user[:password]@]host[:port]/topic, or ws(s)://.
    #[arg(short = 'L', long = "url")]
    pub url: Option<String>,
    /// Client identifier.
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Client identifier prefix; the process id is appended.
    #[arg(short = 'I', long = "id-prefix")]
    pub id_prefix: Option<String>,
    /// Keep alive in seconds. Defaults to 60.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    pub keepalive: u16,
    /// User name.
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw")]
    pub password: Option<String>,
    /// MQTT version: mqttv5, mqttv311 or mqttv31 (5, 311, 31). Defaults to mqttv311.
    #[arg(short = 'V', long = "protocol-version", value_parser = parse_version)]
    pub version: Option<ProtocolVersion>,
    /// Disable clean session / clean start (persistent session).
    #[arg(short = 'c', long = "disable-clean-session")]
    pub no_clean: bool,
    /// v5 Session Expiry Interval: seconds, or -1 / 4294967295 / ∞ for never.
    #[arg(
        short = 'x',
        long = "session-expiry-interval",
        allow_hyphen_values = true
    )]
    pub session_expiry: Option<String>,
    /// v5 properties from `-D command identifier value` (user-property takes a name and a
    /// value); taken out of the arguments before clap sees them, see [`parse`].
    #[arg(skip)]
    pub properties: Vec<Vec<String>>,
    /// Print debug messages to stderr.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Do not print error messages.
    #[arg(long)]
    pub quiet: bool,
    /// CA certificates file (PEM); enables TLS.
    #[arg(long)]
    pub cafile: Option<PathBuf>,
    /// Directory of CA certificates (PEM); enables TLS.
    #[arg(long)]
    pub capath: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Do not verify the server certificate. For tests only.
    #[arg(long)]
    pub insecure: bool,
    /// Use TLS with the operating system's CA certificates.
    #[arg(long = "tls-use-os-certs")]
    pub tls_use_os_certs: bool,
    /// TLS ALPN protocol to offer.
    #[arg(long = "tls-alpn")]
    pub tls_alpn: Option<String>,
    /// Accepted for compatibility; rustls chooses TLS 1.2 or 1.3.
    #[arg(long = "tls-version", hide = true)]
    pub tls_version: Option<String>,
    /// Accepted for compatibility; Nagle's algorithm is always off.
    #[arg(long = "nodelay", hide = true)]
    pub nodelay: bool,
    /// Will topic.
    #[arg(long = "will-topic")]
    pub will_topic: Option<String>,
    /// Will payload (empty when not given).
    #[arg(long = "will-payload")]
    pub will_payload: Option<String>,
    /// Will QoS.
    #[arg(long = "will-qos", value_parser = parse_qos)]
    pub will_qos: Option<QoS>,
    /// Retain the will.
    #[arg(long = "will-retain")]
    pub will_retain: bool,
}

/// v5 properties given with `-D`, by the packet they go into.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    /// CONNECT properties.
    pub connect: ConnectProperties,
    /// PUBLISH properties.
    pub publish: PublishProperties,
    /// SUBSCRIBE properties.
    pub subscribe: SubscribeProperties,
    /// UNSUBSCRIBE properties.
    pub unsubscribe: UnsubscribeProperties,
    /// DISCONNECT properties.
    pub disconnect: DisconnectProperties,
    /// Will properties.
    pub will: WillProperties,
}

/// The result of [`ClientOpts::build`].
#[derive(Debug)]
pub struct Connection {
    /// Options for [`tern_client::Client::connect`].
    pub options: ConnectOptions,
    /// The topic from the `-L` URL's path, if any.
    pub url_topic: Option<String>,
    /// `-D` properties.
    pub properties: Properties,
}

impl ClientOpts {
    /// Protocol version in use (mosquitto's default is 3.1.1).
    pub fn protocol(&self) -> ProtocolVersion {
        self.version.unwrap_or(ProtocolVersion::V311)
    }

    /// Builds connection options. `id_base` names the tool for generated client identifiers.
    pub fn build(&self, id_base: &str) -> anyhow::Result<Connection> {
        let protocol = self.protocol();
        let mut url_topic = None;
        let mut options = match &self.url {
            Some(url) => {
                let parsed = tern_client::BrokerUrl::parse(url)?;
                let options = ConnectOptions::from_url(url)?;
                if matches!(parsed.transport, Transport::Tcp | Transport::Tls) {
                    let topic = parsed.path.trim_start_matches('/');
                    if !topic.is_empty() {
                        url_topic = Some(topic.to_owned());
                    }
                }
                options
            }
            None => {
                let tls = self.cafile.is_some() || self.capath.is_some() || self.tls_use_os_certs;
                let mut options = ConnectOptions::new(
                    self.host.clone().unwrap_or_else(|| "localhost".to_owned()),
                    0,
                );
                options.transport = if tls { Transport::Tls } else { Transport::Tcp };
                options
            }
        };
        if let (Some(host), Some(_)) = (&self.host, &self.url) {
            options.host = host.clone();
        }
        if let Some(port) = self.port {
            options.port = port;
        } else if options.port == 0 {
            options.port = options.transport.default_port();
        }
        if self.cafile.is_some() || self.capath.is_some() || self.tls_use_os_certs {
            options.transport = match options.transport {
                Transport::Ws => Transport::Wss,
                Transport::Tcp => Transport::Tls,
                t => t,
            };
        }
        options.tls.ca_file = self.cafile.clone();
        options.tls.ca_path = self.capath.clone();
        options.tls.client_cert = self.cert.clone();
        options.tls.client_key = self.key.clone();
        options.tls.insecure = self.insecure;
        if let Some(alpn) = &self.tls_alpn {
            options.tls.alpn = vec![alpn.as_bytes().to_vec()];
        }
        if self.cert.is_some() != self.key.is_some() {
            bail!("both --cert and --key are needed for a client certificate");
        }

        options.protocol = protocol;
        options.keep_alive = Duration::from_secs(u64::from(self.keepalive));
        if self.keepalive < 5 {
            bail!(
                "invalid keepalive {}: it must be between 5 and 65535 inclusive",
                self.keepalive
            );
        }
        options.client_id = match (&self.id, &self.id_prefix) {
            (Some(_), Some(_)) => bail!("-i and -I cannot be used together"),
            (Some(id), None) => id.clone(),
            (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
            (None, None) => tern_client::options::random_client_id(id_base),
        };
        if self.no_clean && self.id.is_none() && self.id_prefix.is_none() {
            bail!("a client id (-i or -I) is needed with -c (persistent session)");
        }
        if options.client_id.len() > 65535 {
            bail!("client id is longer than 65535 bytes");
        }
        options.clean_start = !self.no_clean;
        if let Some(u) = &self.username {
            options.username = Some(u.clone());
        }
        if let Some(p) = &self.password {
            options.password = Some(Bytes::from(p.clone().into_bytes()));
        }
        if options.password.is_some() && options.username.is_none() && !protocol.is_v5() {
            bail!("a password (-P) needs a username (-u) in MQTT 3.x");
        }

        let expiry = match &self.session_expiry {
            None => None,
            Some(s) if s == "-1" || s == "∞" => Some(u32::MAX),
            Some(s) => Some(s.parse::<u32>().map_err(|_| {
                anyhow!("invalid session expiry interval {s:?}: seconds 0-4294967295, or -1 / ∞")
            })?),
        };
        if expiry.is_some() && !protocol.is_v5() {
            bail!("-x (session expiry interval) needs MQTT v5 (-V mqttv5)");
        }
        options.session_expiry_interval = match expiry {
            Some(e) => Some(e),
            None if self.no_clean && protocol.is_v5() => Some(u32::MAX),
            None => None,
        };

        let properties = self.parse_properties(protocol)?;
        options.properties = properties.connect.clone();
        if let Some(e) = properties.connect.session_expiry_interval {
            options.session_expiry_interval = Some(e);
        }

        if let Some(topic) = &self.will_topic {
            tern_codec::topic::validate_topic_name(topic)
                .map_err(|e| anyhow!("invalid will topic {topic:?}: {e}"))?;
            options.will = Some(LastWill {
                topic: ByteStr::from(topic.as_str()),
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default().into_bytes()),
                qos: self.will_qos.unwrap_or_default(),
                retain: self.will_retain,
                properties: properties.will.clone(),
            });
        } else if self.will_payload.is_some() || self.will_qos.is_some() || self.will_retain {
            bail!("--will-payload, --will-qos and --will-retain need --will-topic");
        }
        // The command-line tools report a failed first connection and stop; after that they
        // reconnect like mosquitto_sub's loop does.
        options.connect_timeout = Duration::from_secs(30);
        Ok(Connection {
            options,
            url_topic,
            properties,
        })
    }

    fn parse_properties(&self, protocol: ProtocolVersion) -> anyhow::Result<Properties> {
        let mut props = Properties::default();
        if self.properties.is_empty() {
            return Ok(props);
        }
        if !protocol.is_v5() {
            bail!("-D (properties) needs MQTT v5 (-V mqttv5)");
        }
        for p in &self.properties {
            let [command, identifier, rest @ ..] = p.as_slice() else {
                bail!("-D needs a command, an identifier and a value");
            };
            set_property(&mut props, command, identifier, rest)
                .with_context(|| format!("-D {}", p.join(" ")))?;
        }
        Ok(props)
    }
}

fn set_property(
    props: &mut Properties,
    command: &str,
    identifier: &str,
    values: &[String],
) -> anyhow::Result<()> {
    let value = values.first().map(String::as_str).unwrap_or("");
    let pair = || -> anyhow::Result<(ByteStr, ByteStr)> {
        match values {
            [name, value] => Ok((ByteStr::from(name.as_str()), ByteStr::from(value.as_str()))),
            _ => bail!("user-property needs a name and a value"),
        }
    };
    if identifier != "user-property" && values.len() != 1 {
        bail!("{identifier} takes exactly one value");
    }
    let num = |max: u64| -> anyhow::Result<u64> {
        let n: u64 = value
            .parse()
            .map_err(|_| anyhow!("{identifier} must be a number, not {value:?}"))?;
        if n > max {
            bail!("{identifier} must be at most {max}");
        }
        Ok(n)
    };
    let u8v = || num(255).map(|n| n as u8);
    let u16v = || num(65535).map(|n| n as u16);
    let u32v = || num(u64::from(u32::MAX)).map(|n| n as u32);
    let flag = || -> anyhow::Result<bool> {
        match u8v()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => bail!("{identifier} must be 0 or 1"),
        }
    };
    let string = || ByteStr::from(value);
    let binary = || Bytes::from(value.to_owned().into_bytes());
    let unsupported = || anyhow!("{identifier} is not a valid property for {command}");
    match command {
        "connect" => {
            let c = &mut props.connect;
            match identifier {
                "session-expiry-interval" => c.session_expiry_interval = Some(u32v()?),
                "receive-maximum" => c.receive_maximum = Some(u16v()?),
                "maximum-packet-size" => c.maximum_packet_size = Some(u32v()?),
                "topic-alias-maximum" => c.topic_alias_maximum = Some(u16v()?),
                "request-response-information" => c.request_response_information = Some(flag()?),
                "request-problem-information" => c.request_problem_information = Some(flag()?),
                "authentication-method" => c.authentication_method = Some(string()),
                "authentication-data" => c.authentication_data = Some(binary()),
                "user-property" => c.user_properties.push(pair()?),
                _ => return Err(unsupported()),
            }
        }
        "publish" => {
            let p = &mut props.publish;
            match identifier {
                "payload-format-indicator" => p.payload_format_indicator = Some(flag()?),
                "message-expiry-interval" => p.message_expiry_interval = Some(u32v()?),
                "content-type" => p.content_type = Some(string()),
                "response-topic" => p.response_topic = Some(string()),
                "correlation-data" => p.correlation_data = Some(binary()),
                "topic-alias" => p.topic_alias = Some(u16v()?),
                "user-property" => p.user_properties.push(pair()?),
                _ => return Err(unsupported()),
            }
        }
        "subscribe" => match identifier {
            "subscription-identifier" => {
                props.subscribe.subscription_identifier = Some(num(268_435_455)? as u32)
            }
            "user-property" => props.subscribe.user_properties.push(pair()?),
            _ => return Err(unsupported()),
        },
        "unsubscribe" => match identifier {
            "user-property" => props.unsubscribe.user_properties.push(pair()?),
            _ => return Err(unsupported()),
        },
        "disconnect" => match identifier {
            "session-expiry-interval" => props.disconnect.session_expiry_interval = Some(u32v()?),
            "reason-string" => props.disconnect.reason_string = Some(string()),
            "user-property" => props.disconnect.user_properties.push(pair()?),
            _ => return Err(unsupported()),
        },
        "will" => {
            let w = &mut props.will;
            match identifier {
                "will-delay-interval" => w.will_delay_interval = Some(u32v()?),
                "payload-format-indicator" => w.payload_format_indicator = Some(flag()?),
                "message-expiry-interval" => w.message_expiry_interval = Some(u32v()?),
                "content-type" => w.content_type = Some(string()),
                "response-topic" => w.response_topic = Some(string()),
                "correlation-data" => w.correlation_data = Some(binary()),
                "user-property" => w.user_properties.push(pair()?),
                _ => return Err(unsupported()),
            }
        }
        _ => bail!(
            "invalid command {command:?}: use connect, publish, subscribe, unsubscribe, disconnect or will"
        ),
    }
    Ok(())
}

/// Installs a tracing subscriber on stderr for `TERN_LOG` (e.g. `TERN_LOG=tern_client=trace`).
pub fn init_debug(_debug: bool) {
    if let Ok(filter) = std::env::var("TERN_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
}

/// `-d`: a line on stdout for every packet, worded as libmosquitto's debug log, so that
/// `tern sub -d` reads like `mosquitto_sub -d`. With `subscriber`, SUBACK also prints
/// mosquitto_sub's `Subscribed (mid: N): granted, ...` line.
pub fn debug_log(client_id: &str, subscriber: bool) -> tern_client::PacketLog {
    let id = if client_id.is_empty() {
        "(null)".to_owned()
    } else {
        client_id.to_owned()
    };
    tern_client::PacketLog::new(move |direction, packet| {
        let lines = debug_lines(&id, direction, packet, subscriber);
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    })
}

fn debug_lines(
    id: &str,
    direction: tern_client::Direction,
    packet: &tern_codec::Packet,
    subscriber: bool,
) -> Vec<String> {
    use tern_codec::Packet;
    let sent = direction == tern_client::Direction::Sent;
    let verb = if sent { "sending" } else { "received" };
    let line = |rest: String| format!("Client {id} {verb} {rest}");
    match packet {
        Packet::Connect(_) => vec![line("CONNECT".into())],
        Packet::ConnAck(c) => vec![line(format!("CONNACK ({})", c.reason_code.0))],
        Packet::Publish(p) => vec![line(format!(
            "PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            u8::from(p.dup),
            p.qos as u8,
            u8::from(p.retain),
            p.packet_id,
            p.topic,
            p.payload.len()
        ))],
        Packet::PubAck(a) if sent => {
            vec![line(format!(
                "PUBACK (m{}, rc{})",
                a.packet_id, a.reason_code.0
            ))]
        }
        Packet::PubAck(a) => vec![line(format!(
            "PUBACK (Mid: {}, RC:{})",
            a.packet_id, a.reason_code.0
        ))],
        Packet::PubRec(r) if sent => {
            vec![line(format!(
                "PUBREC (m{}, rc{})",
                r.packet_id, r.reason_code.0
            ))]
        }
        Packet::PubRec(r) => vec![line(format!("PUBREC (Mid: {})", r.packet_id))],
        Packet::PubRel(r) if sent => vec![line(format!("PUBREL (m{})", r.packet_id))],
        Packet::PubRel(r) => vec![line(format!("PUBREL (Mid: {})", r.packet_id))],
        Packet::PubComp(c) if sent => vec![line(format!("PUBCOMP (m{})", c.packet_id))],
        Packet::PubComp(c) => vec![line(format!(
            "PUBCOMP (Mid: {}, RC:{})",
            c.packet_id, c.reason_code.0
        ))],
        Packet::Subscribe(s) => s
            .filters
            .iter()
            .map(|(topic, o)| {
                let options = (u8::from(o.no_local) << 2)
                    | (u8::from(o.retain_as_published) << 3)
                    | ((o.retain_handling as u8) << 4);
                line(format!(
                    "SUBSCRIBE (Mid: {}, Topic: {topic}, QoS: {}, Options: 0x{options:02x})",
                    s.packet_id, o.qos as u8
                ))
            })
            .collect(),
        Packet::SubAck(a) => {
            let mut v = vec![line("SUBACK".into())];
            if subscriber {
                let granted: Vec<String> = a.reason_codes.iter().map(|c| c.0.to_string()).collect();
                v.push(format!(
                    "Subscribed (mid: {}): {}",
                    a.packet_id,
                    granted.join(", ")
                ));
            }
            v
        }
        Packet::Unsubscribe(u) => u
            .filters
            .iter()
            .map(|t| line(format!("UNSUBSCRIBE (Mid: {}, Topic: {t})", u.packet_id)))
            .collect(),
        Packet::UnsubAck(_) => vec![line("UNSUBACK".into())],
        Packet::PingReq => vec![line("PINGREQ".into())],
        Packet::PingResp => vec![line("PINGRESP".into())],
        Packet::Disconnect(d) if !sent => {
            vec![line(format!("DISCONNECT ({})", d.reason_code.0))]
        }
        Packet::Disconnect(_) => vec![line("DISCONNECT".into())],
        Packet::Auth(_) => vec![line("AUTH".into())],
    }
}

/// A tokio runtime for one client command (one thread: the client is I/O bound).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Describes a client error for the user, naming the reason code of a refused connection.
pub fn connect_error(e: tern_client::Error, options: &ConnectOptions) -> anyhow::Error {
    use tern_client::Error;
    match e {
        Error::Unreachable { .. } | Error::ConnectionRefused { .. } | Error::Tls(_) => {
            anyhow!("{e}")
        }
        other => anyhow!(
            "cannot connect to {}:{}: {other}",
            options.host,
            options.port
        ),
    }
}

/// Connects with `options`, logging every packet on stdout with `-d` (`debug`; see
/// [`debug_log`] for `subscriber`), and describes a failure for the user.
pub async fn connect(
    mut options: ConnectOptions,
    debug: bool,
    subscriber: bool,
) -> anyhow::Result<(Client, Messages)> {
    if debug {
        options.packet_log = Some(debug_log(&options.client_id, subscriber));
    }
    Client::connect(options.clone())
        .await
        .map_err(|e| connect_error(e, &options))
}

/// Resolves after `seconds` (`-W`), counted from now; never without a timeout.
pub fn timeout(seconds: Option<u64>) -> impl Future<Output = ()> {
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    }
}

/// Reads the payload from a file, with the file named in the error.
pub fn read_file(path: &std::path::Path) -> anyhow::Result<Bytes> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| anyhow!("cannot read file {:?}: {e}", path.display().to_string()))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
