//! MQTT 5 request/response: answers requests on `service/echo` and sends itself one.
//!
//! ```text
//! cargo run -p tern-client --example request -- mqtt://localhost:1883
//! ```

use std::time::Duration;
use tern_client::{Client, ConnectOptions, Publish, QoS, request_properties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "mqtt://localhost:1883".into());

    // The service: echoes each request to its Response Topic with its Correlation Data.
    let (service, mut requests) = Client::connect(ConnectOptions::from_url(&url)?).await?;
    service.subscribe("service/echo", QoS::AtLeastOnce).await?;
    let responder = service.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let Some(topic) = request.properties.response_topic.clone() else {
                continue;
            };
            let mut reply = Publish {
                topic,
                qos: QoS::AtLeastOnce,
                payload: request.payload.clone(),
                ..Default::default()
            };
            reply.properties.correlation_data = request.properties.correlation_data.clone();
            let _ = responder.publish_message(reply).await;
        }
    });

    // The caller.
    let (caller, _) = Client::connect(ConnectOptions::from_url(&url)?).await?;
    caller
        .subscribe("replies/example", QoS::AtLeastOnce)
        .await?;
    let request = Publish {
        topic: "service/echo".into(),
        qos: QoS::AtLeastOnce,
        payload: "ping".into(),
        properties: request_properties("replies/example", None).into(),
        ..Default::default()
    };
    let response = caller.request(request, Duration::from_secs(5)).await?;
    println!("response: {}", String::from_utf8_lossy(&response.payload));
    caller.disconnect().await?;
    service.disconnect().await?;
    Ok(())
}
