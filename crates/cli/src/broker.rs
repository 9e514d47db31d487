//! `tern broker`: runs the MQTT broker. Parses arguments and `tern.toml`, then hands over to the
//! `tern-broker` library; waits for SIGINT/SIGTERM and shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tern_broker::config::{ListenerConfig, ListenerProtocol};
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
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
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
    let mut broker = Broker::new(config);
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
    reload_on_sighup(broker.handle());
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
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGHUP reloads TLS certificates, password and ACL files without dropping connections.
fn reload_on_sighup(handle: tern_broker::BrokerHandle) {
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
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP: no reload"),
        }
    }
    #[cfg(not(unix))]
    let _ = handle;
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
