//! `tern`: the one binary. It parses arguments and configuration and calls the libraries.

#![forbid(unsafe_code)]

use clap::Parser;

/// Tern: an MQTT 3.1, 3.1.1 and 5.0 broker, client and toolkit.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
