//! `tern`: the one binary. It parses arguments and configuration and calls the libraries; each
//! subcommand lives in a module of its own.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

mod bench;
mod broker;
mod client_opts;
mod passwd;
mod pub_cmd;
mod rr_cmd;
mod rules;
mod sub_cmd;

/// Tern: an MQTT 3.1, 3.1.1 and 5.0 broker, client and toolkit.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// The subcommands. Each variant's arguments and code live in the module of the same name.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the MQTT broker (listens on 127.0.0.1:1883 unless configured otherwise).
    Broker(broker::BrokerArgs),
    /// Manage a password file in Mosquitto's format (mosquitto_passwd's flags).
    Passwd(passwd::PasswdArgs),
    /// Load-test an MQTT broker: throughput, latency, loss and connection cost.
    Bench(bench::BenchArgs),
    /// Publish MQTT messages (mosquitto_pub's flags; -h is the host, see `tern pub --help`).
    #[command(disable_help_flag = true)]
    Pub(pub_cmd::PubArgs),
    /// Subscribe and print messages (mosquitto_sub's flags and output; see `tern sub --help`).
    #[command(disable_help_flag = true)]
    Sub(sub_cmd::SubArgs),
    /// MQTT v5 request/response (mosquitto_rr's flags; see `tern rr --help`).
    #[command(disable_help_flag = true)]
    Rr(rr_cmd::RrArgs),
    /// Work with rules without a broker: `tern rules test` evaluates one against a message.
    Rules(rules::RulesArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            std::process::ExitCode::SUCCESS
        }
        Some(command) => match command {
            Command::Broker(args) => broker::run(args),
            Command::Passwd(args) => passwd::run(args),
            Command::Bench(args) => bench::run(args),
            Command::Pub(args) => pub_cmd::run(args),
            Command::Sub(args) => sub_cmd::run(args),
            Command::Rr(args) => rr_cmd::run(args),
            Command::Rules(args) => rules::run(args),
        },
    }
}

/// Installs the log subscriber on standard error (colours only on a terminal): `info` by default,
/// `debug` with `verbose`; `RUST_LOG` overrides.
pub(crate) fn init_tracing(verbose: bool) {
    // The store's own engine logs every flush at info: keep it to warnings unless asked.
    let default = if verbose {
        "debug,fjall=info,lsm_tree=info"
    } else {
        "info,fjall=warn,lsm_tree=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
