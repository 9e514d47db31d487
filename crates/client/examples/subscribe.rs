//! Subscribes to a topic filter and prints every message until Ctrl-C, surviving broker
//! restarts (the client reconnects and resumes its session).
//!
//! ```text
//! cargo run -p tern-client --example subscribe -- mqtt://localhost:1883 'sensors/#'
//! ```

use std::time::Duration;
use tern_client::{Client, ConnectOptions, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "mqtt://localhost:1883".into());
    let filter = args.next().unwrap_or_else(|| "#".into());

    let mut options = ConnectOptions::from_url(&url)?;
    // A persistent session: messages published while we are away are kept for us.
    options.client_id = "tern-example-subscriber".into();
    options.clean_start = false;
    options.session_expiry_interval = Some(3600);
    options.keep_alive = Duration::from_secs(30);

    let (client, mut messages) = Client::connect(options).await?;
    let granted = client.subscribe(filter.as_str(), QoS::ExactlyOnce).await?;
    eprintln!("subscribed to {filter} with QoS {}", granted as u8);
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(m) => println!("{} {}", m.topic, String::from_utf8_lossy(&m.payload)),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await?;
    Ok(())
}
