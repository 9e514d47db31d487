//! The public handle: [`Client`] sends requests to the event loop task and awaits their
//! completion; [`Messages`] receives the application messages the server delivers.

use crate::error::{Error, Result};
use crate::event_loop::{Command, ConnectionState, EventLoop};
use crate::options::ConnectOptions;
use crate::protocol::PublishOutcome;
use bytes::Bytes;
use std::time::Duration;
use tern_codec::{
    ByteStr, ConnAck, Publish, PublishProperties, QoS, ReasonCode, SubscribeProperties,
    SubscriptionOptions, UnsubscribeProperties,
};
use tokio::sync::{mpsc, oneshot, watch};

/// A received application message: the PUBLISH as the server sent it, with any topic alias
/// already replaced by the topic name.
pub type Message = Publish;

/// A handle to a connected client. Cheap to clone; every clone talks to the same connection.
/// The connection closes when [`Client::disconnect`] is called or every clone is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
}

/// The stream of messages received on the client's subscriptions.
///
/// Messages are buffered without bound so that a handler may publish (and await the
/// acknowledgement) without deadlocking the connection; consume them promptly.
#[derive(Debug)]
pub struct Messages {
    receiver: mpsc::UnboundedReceiver<Message>,
}

impl Messages {
    /// The next message; `None` once the client is closed and every message was received.
    pub async fn recv(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }

    /// A message if one is already waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.receiver.try_recv().ok()
    }
}

impl Client {
    /// Connects, waits for the server's CONNACK and starts the event loop task. Fails with
    /// [`Error::ConnectionRefused`] (naming the reason code), [`Error::Unreachable`],
    /// [`Error::Tls`], [`Error::Timeout`]...; the first connection is not retried.
    pub async fn connect(options: ConnectOptions) -> Result<(Client, Messages)> {
        let (client, messages, connack) = Client::connect_with_connack(options).await?;
        let _ = connack;
        Ok((client, messages))
    }

    /// Like [`Client::connect`], also returning the CONNACK (session present, server limits,
    /// assigned client identifier).
    pub async fn connect_with_connack(
        options: ConnectOptions,
    ) -> Result<(Client, Messages, ConnAck)> {
        if options.client_id.is_empty() && !options.protocol.is_v5() && !options.clean_start {
            return Err(Error::InvalidOption(
                "an empty client identifier needs clean session in MQTT 3.x [MQTT-3.1.3-7]".into(),
            ));
        }
        let (command_tx, command_rx) = mpsc::channel(1024);
        let (message_tx, message_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let (first_tx, first_rx) = oneshot::channel();
        let event_loop = EventLoop::new(options, command_rx, message_tx, state_tx);
        tokio::spawn(event_loop.run(first_tx));
        let connack = first_rx.await.map_err(|_| Error::Closed)??;
        Ok((
            Client {
                commands: command_tx,
                state: state_rx,
            },
            Messages {
                receiver: message_rx,
            },
            connack,
        ))
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Publishes `payload` on `topic`. Resolves when the message is delivered as its QoS
    /// promises: written (QoS 0), PUBACK (QoS 1), PUBCOMP (QoS 2), with the v5 reason code.
    /// While disconnected the message waits in the offline queue.
    pub async fn publish(
        &self,
        topic: impl Into<ByteStr>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<PublishOutcome> {
        self.publish_message(Publish {
            topic: topic.into(),
            qos,
            retain,
            payload: payload.into(),
            ..Default::default()
        })
        .await
    }

    /// Publishes a PUBLISH with full control over its v5 properties. `dup` and `packet_id`
    /// are managed by the client and ignored here.
    pub async fn publish_message(&self, publish: Publish) -> Result<PublishOutcome> {
        self.call(|tx| Command::Publish(publish, tx)).await
    }

    /// Subscribes to one topic filter at `qos`; returns the granted QoS or
    /// [`Error::Rejected`] with the SUBACK failure code.
    pub async fn subscribe(&self, filter: impl Into<ByteStr>, qos: QoS) -> Result<QoS> {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        let codes = self
            .subscribe_many(
                vec![(filter.into(), options)],
                SubscribeProperties::default(),
            )
            .await?;
        let code = codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
        match QoS::from_u8(code.0) {
            Some(granted) => Ok(granted),
            None => Err(Error::Rejected {
                reason_code: code,
                reason_string: None,
            }),
        }
    }

    /// Subscribes to several filters with their options in one SUBSCRIBE; returns the SUBACK
    /// reason codes (granted QoS or failure), one per filter, in order.
    pub async fn subscribe_many(
        &self,
        filters: Vec<(ByteStr, SubscriptionOptions)>,
        properties: SubscribeProperties,
    ) -> Result<Vec<ReasonCode>> {
        self.call(|tx| Command::Subscribe(filters, properties, tx))
            .await
    }

    /// Unsubscribes from filters; returns the v5 UNSUBACK reason codes (empty for 3.x).
    pub async fn unsubscribe(&self, filters: Vec<ByteStr>) -> Result<Vec<ReasonCode>> {
        self.call(|tx| Command::Unsubscribe(filters, UnsubscribeProperties::default(), tx))
            .await
    }

    /// MQTT 5 request/response: publishes `request` with its Response Topic (required) and
    /// Correlation Data (random 16 bytes when absent), then waits up to `timeout` for the
    /// message carrying the same Correlation Data. The caller must be subscribed to the
    /// response topic. The response is not also delivered to [`Messages`].
    pub async fn request(&self, mut request: Publish, timeout: Duration) -> Result<Message> {
        if request.properties.response_topic.is_none() {
            return Err(Error::InvalidOption(
                "a request needs a Response Topic property".into(),
            ));
        }
        let correlation = match &request.properties.correlation_data {
            Some(c) => c.clone(),
            None => {
                let random: [u8; 16] = rand::random();
                let c = Bytes::copy_from_slice(&random);
                request.properties.correlation_data = Some(c.clone());
                c
            }
        };
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::AwaitResponse(correlation.clone(), tx))
            .await
            .map_err(|_| Error::Closed)?;
        let published = self.publish_message(request).await;
        if let Err(e) = published {
            let _ = self
                .commands
                .send(Command::ForgetResponse(correlation))
                .await;
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                let _ = self
                    .commands
                    .send(Command::ForgetResponse(correlation))
                    .await;
                Err(Error::Timeout("waiting for the response"))
            }
        }
    }

    /// Sends DISCONNECT (Normal disconnection) and closes the connection. Requests still in
    /// flight fail with [`Error::ConnectionLost`].
    pub async fn disconnect(&self) -> Result<()> {
        self.disconnect_with(ReasonCode::NORMAL_DISCONNECTION, None)
            .await
    }

    /// Sends DISCONNECT with a v5 reason code (e.g. 0x04 to have the will published) and an
    /// optional new Session Expiry Interval, then closes.
    pub async fn disconnect_with(
        &self,
        reason_code: ReasonCode,
        session_expiry_interval: Option<u32>,
    ) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Disconnect(
                reason_code,
                session_expiry_interval,
                tx,
            ))
            .await
            .is_err()
        {
            return Ok(());
        }
        let _ = rx.await;
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|s| matches!(s, ConnectionState::Closed(_)))
            .await;
        Ok(())
    }

    /// The connection's current state.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// Waits until the client is connected (again); fails when it is closed for good.
    pub async fn wait_connected(&self) -> Result<ConnAck> {
        let mut state = self.state.clone();
        let s = state
            .wait_for(|s| {
                matches!(
                    s,
                    ConnectionState::Connected(_) | ConnectionState::Closed(_)
                )
            })
            .await
            .map_err(|_| Error::Closed)?;
        match &*s {
            ConnectionState::Connected(connack) => Ok((**connack).clone()),
            _ => Err(Error::Closed),
        }
    }

    /// Waits until the connection is lost or closed.
    pub async fn wait_disconnected(&self) -> ConnectionState {
        let mut state = self.state.clone();
        match state
            .wait_for(|s| !matches!(s, ConnectionState::Connected(_)))
            .await
        {
            Ok(s) => s.clone(),
            Err(_) => ConnectionState::Closed("the event loop ended".into()),
        }
    }
}

/// v5 PUBLISH properties for a request: response topic and correlation data.
pub fn request_properties(response_topic: &str, correlation: Option<Bytes>) -> PublishProperties {
    PublishProperties {
        response_topic: Some(ByteStr::from(response_topic)),
        correlation_data: correlation,
        ..Default::default()
    }
}
