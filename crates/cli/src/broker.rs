//! `tern broker`: runs the MQTT broker. Parses arguments and `tern.toml`, then hands over to the
//! `tern-broker` library; waits for SIGINT/SIGTERM and shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Weak;
use std::time::Duration;
use tern_broker::config::{ListenerConfig, ListenerProtocol};
use tern_broker::rules::RulesRuntime;
use tern_broker::store::fjall_store::FjallStore;
use tern_broker::{Broker, Config};

/// Arguments of `tern broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Configuration file (see docs/configuration.md).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen on ADDR:PORT; repeatable. Replaces the listeners of the configuration file.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Debug logs.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Keep everything in memory: no on-disk store (as `[storage] persistence = false`).
    #[arg(long = "memory")]
    pub memory: bool,
}

/// Runs the broker until SIGINT or SIGTERM.
pub fn run(args: BrokerArgs) -> ExitCode {
    crate::init_tracing(args.verbose);
    let mut config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tern broker: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if args.memory {
        config.storage.persistence = false;
    }
    if !args.listen.is_empty() {
        config.listeners = args
            .listen
            .iter()
            .map(|a| ListenerConfig::mqtt(*a))
            .collect();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tern broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, args.config))
}

/// How long shutdown waits for queued webhooks of the rules engine.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(5);

async fn serve(config: Config, path: Option<PathBuf>) -> ExitCode {
    let mut rules = match RulesRuntime::start(&config.rules) {
        Ok(r) => r,
        Err(e) => {
            let origin = path.as_deref().unwrap_or(std::path::Path::new("<config>"));
            eprintln!("tern broker: {}: [[rules]]: {e}", origin.display());
            return match e {
                tern_rules::EngineError::Rule(_) => ExitCode::from(2),
                tern_rules::EngineError::Webhook(_) => ExitCode::FAILURE,
            };
        }
    };
    let store = if config.storage.persistence {
        match FjallStore::open(&config.storage) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("tern broker: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut broker = Broker::new(config).with_publish_hook(rules.hook());
    if let Some(s) = &store {
        broker = broker
            .with_session_store(s.clone())
            .with_retained_store(s.clone());
    }
    let broker = match broker.start().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tern broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addrs: Vec<String> = broker
        .local_addrs()
        .iter()
        .zip(broker.listeners())
        .map(|(a, l)| {
            let scheme = match (l.protocol, l.tls.is_some()) {
                (ListenerProtocol::Mqtt, false) => "mqtt",
                (ListenerProtocol::Mqtt, true) => "mqtts",
                (ListenerProtocol::Ws, false) => "ws",
                (ListenerProtocol::Ws, true) => "wss",
            };
            match l.protocol {
                ListenerProtocol::Ws => format!("{scheme}://{a}{}", l.ws_path()),
                ListenerProtocol::Mqtt => format!("{scheme}://{a}"),
            }
        })
        .collect();
    tracing::info!("tern broker listening on {}", addrs.join(", "));
    rules.run(broker.handle());
    let engine = rules
        .engine()
        .map_or_else(Weak::new, |e| std::sync::Arc::downgrade(&e));
    reload_on_sighup(broker.handle(), engine, path);
    let signal = shutdown_signal();
    tokio::select! {
        name = signal => tracing::info!(signal = name, "shutting down"),
        _ = broker.wait_for_shutdown_request() => tracing::info!("shutting down"),
    }
    broker.shutdown().await;
    if let Some(s) = store {
        // Every session has been handed back: commit and sync the last writes.
        s.close();
    }
    // Logs the rules' counters, then lets queued webhooks finish.
    rules.shutdown(WEBHOOK_DRAIN).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGHUP reloads TLS certificates, password and ACL files without dropping connections, and
/// the `[[rules]]` of the configuration file (on error the rules in force stay).
fn reload_on_sighup(
    handle: tern_broker::BrokerHandle,
    rules: Weak<tern_rules::RuleEngine>,
    path: Option<PathBuf>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let failed = handle.reload();
                        tracing::info!(
                            signal = "SIGHUP",
                            failed,
                            "reloaded certificates, password and ACL files"
                        );
                        if let (Some(path), Some(engine)) = (&path, rules.upgrade()) {
                            match Config::from_file(path) {
                                // The engine logs the outcome, naming the rule on error.
                                Ok(c) => {
                                    let _ = engine.reload(&c.rules);
                                }
                                Err(e) => tracing::error!(
                                    signal = "SIGHUP",
                                    error = %e,
                                    "rules not reloaded; the previous rules stay in force"
                                ),
                            }
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP: no reload"),
        }
    }
    #[cfg(not(unix))]
    let _ = (handle, rules, path);
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
