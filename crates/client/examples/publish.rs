//! Publishes one message at each QoS and prints how each was acknowledged.
//!
//! ```text
//! cargo run -p tern-client --example publish -- mqtt://localhost:1883 sensors/t1 21.5
//! ```

use tern_client::{Client, ConnectOptions, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "mqtt://localhost:1883".into());
    let topic = args.next().unwrap_or_else(|| "tern/example".into());
    let payload = args
        .next()
        .unwrap_or_else(|| "hello from tern-client".into());

    let options = ConnectOptions::from_url(&url)?;
    let (client, _messages) = Client::connect(options).await?;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let outcome = client
            .publish(topic.as_str(), qos, false, payload.clone())
            .await?;
        println!(
            "QoS {} delivered (packet id {}, reason {})",
            qos as u8, outcome.packet_id, outcome.reason_code
        );
    }
    client.disconnect().await?;
    Ok(())
}
