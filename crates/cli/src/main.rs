//! `tern`: the one binary. It parses arguments and configuration and calls the libraries; each
//! subcommand lives in a module of its own.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod bench;

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
    /// Load-test an MQTT broker: throughput, latency, loss and connection cost.
    Bench(bench::BenchArgs),
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
            Command::Bench(args) => bench::run(args),
        },
    }
}
