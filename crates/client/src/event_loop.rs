//! The tokio task that owns the connection: it opens the transport, performs the CONNECT /
//! CONNACK handshake, then only moves bytes between the socket and [`Protocol`], requests from
//! [`crate::Client`] handles into it, and its outputs back to the waiting callers. When an
//! established connection is lost it reconnects with capped exponential back-off and jitter,
//! queueing requests meanwhile (the offline queue lives in [`Protocol`]).
//!
//! Shutdown: a [`Command::Disconnect`], or every handle dropped, sends DISCONNECT and ends the
//! task; requests still waiting then fail with [`Error::ConnectionLost`].

use crate::error::{Error, Result};
use crate::options::{ConnectOptions, Direction};
use crate::protocol::{Output, Protocol, PublishOutcome, Token};
use crate::transport::Connection;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::time::Instant;
use tern_codec::{
    ByteStr, ConnAck, Packet, Publish, ReasonCode, SubscribeProperties, SubscriptionOptions,
    UnsubscribeProperties,
};
use tokio::sync::{mpsc, oneshot, watch};

/// The largest packet MQTT can express (a 4-byte Remaining Length), used when the client set no
/// Maximum Packet Size of its own.
const MAX_POSSIBLE_PACKET: usize = 268_435_460;

/// The state of the connection, as seen through [`crate::Client::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the first connection.
    Connecting,
    /// Connected; the CONNACK that accepted us.
    Connected(Box<ConnAck>),
    /// The connection was lost; waiting before attempt `attempt` (1-based).
    Reconnecting {
        /// The attempt about to be made.
        attempt: u32,
        /// Why the previous connection ended.
        reason: String,
    },
    /// The client is closed for good; the reason.
    Closed(String),
}

/// A request from a [`crate::Client`] handle to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Publish(Publish, oneshot::Sender<Result<PublishOutcome>>),
    Subscribe(
        Vec<(ByteStr, SubscriptionOptions)>,
        SubscribeProperties,
        oneshot::Sender<Result<Vec<ReasonCode>>>,
    ),
    Unsubscribe(
        Vec<ByteStr>,
        UnsubscribeProperties,
        oneshot::Sender<Result<Vec<ReasonCode>>>,
    ),
    /// Route the next message carrying this Correlation Data to `reply` instead of the stream.
    AwaitResponse(Bytes, oneshot::Sender<Publish>),
    /// Forget a response route (the request timed out).
    ForgetResponse(Bytes),
    Disconnect(ReasonCode, Option<u32>, oneshot::Sender<()>),
}

enum Waiter {
    Publish(oneshot::Sender<Result<PublishOutcome>>),
    Subscribe(oneshot::Sender<Result<Vec<ReasonCode>>>),
    Unsubscribe(oneshot::Sender<Result<Vec<ReasonCode>>>),
}

/// How serving one connection ended.
enum Ended {
    /// The user closed the client.
    Closed,
    /// The connection failed; reconnect if allowed.
    Lost(Error),
}

pub(crate) struct EventLoop {
    options: ConnectOptions,
    protocol: Protocol,
    commands: mpsc::Receiver<Command>,
    messages: mpsc::UnboundedSender<Publish>,
    state: watch::Sender<ConnectionState>,
    next_token: Token,
    waiters: HashMap<Token, Waiter>,
    responders: HashMap<Bytes, oneshot::Sender<Publish>>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    max_incoming: usize,
}

impl EventLoop {
    pub(crate) fn new(
        options: ConnectOptions,
        commands: mpsc::Receiver<Command>,
        messages: mpsc::UnboundedSender<Publish>,
        state: watch::Sender<ConnectionState>,
    ) -> EventLoop {
        let max_incoming = options
            .properties
            .maximum_packet_size
            .map(|m| m as usize)
            .unwrap_or(MAX_POSSIBLE_PACKET);
        EventLoop {
            protocol: Protocol::new(&options),
            options,
            commands,
            messages,
            state,
            next_token: 1,
            waiters: HashMap::new(),
            responders: HashMap::new(),
            read_buf: BytesMut::with_capacity(8 * 1024),
            write_buf: BytesMut::with_capacity(8 * 1024),
            max_incoming,
        }
    }

    /// Runs until the client is closed. The first connection's result goes to `first`: an
    /// error there ends the task (nothing was established to resume).
    pub(crate) async fn run(mut self, first: oneshot::Sender<Result<ConnAck>>) {
        let mut first = Some(first);
        let mut reconnecting = false;
        let mut attempt: u32 = 0;
        let reason = loop {
            let established =
                tokio::time::timeout(self.options.connect_timeout, self.establish(reconnecting))
                    .await
                    .unwrap_or(Err(Error::Timeout("waiting for CONNACK")));
            let lost_reason = match established {
                Ok((connection, connack)) => {
                    attempt = 0;
                    tracing::debug!(
                        client_id = self.protocol.client_id(),
                        session_present = connack.session_present,
                        "connected"
                    );
                    self.state
                        .send_replace(ConnectionState::Connected(Box::new(connack.clone())));
                    if let Some(first) = first.take() {
                        let _ = first.send(Ok(connack));
                    }
                    match self.serve(connection).await {
                        Ended::Closed => break "closed by the client".to_owned(),
                        Ended::Lost(e) => e.to_string(),
                    }
                }
                Err(e) => {
                    if let Some(first) = first.take() {
                        let reason = e.to_string();
                        let _ = first.send(Err(e));
                        break reason;
                    }
                    e.to_string()
                }
            };
            tracing::info!(client_id = self.protocol.client_id(), reason = %lost_reason, "connection lost");
            self.protocol.handle_connection_lost(&lost_reason);
            self.dispatch_outputs();
            if !self.options.reconnect.enabled {
                break lost_reason;
            }
            if self
                .options
                .reconnect
                .max_attempts
                .is_some_and(|max| attempt >= max)
            {
                break format!("gave up after {attempt} reconnection attempts: {lost_reason}");
            }
            let jitter: f64 = rand::random();
            let delay = self.options.reconnect.delay(attempt, jitter);
            attempt = attempt.saturating_add(1);
            self.state.send_replace(ConnectionState::Reconnecting {
                attempt,
                reason: lost_reason,
            });
            reconnecting = true;
            if self.wait_offline(delay).await {
                break "closed by the client".to_owned();
            }
        };
        self.protocol.fail_all(&reason);
        self.dispatch_outputs();
        self.state.send_replace(ConnectionState::Closed(reason));
    }

    /// Opens the transport, sends CONNECT, waits for CONNACK.
    async fn establish(&mut self, reconnecting: bool) -> Result<(Connection, ConnAck)> {
        let mut connection = Connection::open(&self.options).await?;
        let version = self.protocol.version();
        let connect = self.protocol.connect_packet(reconnecting);
        self.log(Direction::Sent, &connect);
        self.write_buf.clear();
        tern_codec::encode(&connect, version, &mut self.write_buf)
            .map_err(|e| Error::Protocol(format!("cannot encode CONNECT: {e}")))?;
        connection.write(&self.write_buf).await?;
        self.write_buf.clear();
        self.read_buf.clear();
        loop {
            match tern_codec::decode(&mut self.read_buf, version, self.max_incoming) {
                Ok(Some(Packet::ConnAck(connack))) => {
                    self.log(Direction::Received, &Packet::ConnAck(connack.clone()));
                    self.protocol.handle_connack(&connack, Instant::now())?;
                    return Ok((connection, connack));
                }
                Ok(Some(other)) => {
                    return Err(Error::Protocol(format!(
                        "expected CONNACK, received {}",
                        other.name()
                    )));
                }
                Ok(None) => {}
                Err(e) => return Err(Error::Protocol(e.to_string())),
            }
            if connection.read(&mut self.read_buf).await? == 0 {
                return Err(Error::ConnectionLost(
                    "the server closed the connection before CONNACK".into(),
                ));
            }
        }
    }

    /// Serves an established connection until it ends.
    async fn serve(&mut self, mut connection: Connection) -> Ended {
        // Packets that arrived together with CONNACK (a resumed session's queued messages) are
        // already buffered: handle them now, not when more bytes happen to come.
        if let Err(e) = self.handle_input() {
            let _ = self.flush(&mut connection).await;
            connection.close().await;
            return Ended::Lost(e);
        }
        loop {
            // Write first: a QoS 0 publish is complete once written, so its caller hears of it
            // only after the write (flush dispatches the outputs).
            if let Err(e) = self.flush(&mut connection).await {
                return Ended::Lost(e);
            }
            let deadline = self.protocol.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = connection.read(&mut self.read_buf) => {
                    match read {
                        Ok(0) => return Ended::Lost(Error::ConnectionLost("the server closed the connection".into())),
                        Ok(_) => {
                            if let Err(e) = self.handle_input() {
                                self.dispatch_outputs();
                                let _ = self.flush(&mut connection).await;
                                connection.close().await;
                                return Ended::Lost(e);
                            }
                        }
                        Err(e) => return Ended::Lost(e),
                    }
                }
                command = self.commands.recv() => {
                    match command {
                        None => {
                            // Every handle is gone: nobody can wait for anything any more.
                            self.send_disconnect(&mut connection, ReasonCode::NORMAL_DISCONNECTION, None).await;
                            return Ended::Closed;
                        }
                        Some(Command::Disconnect(code, expiry, done)) => {
                            let _ = self.flush(&mut connection).await;
                            self.send_disconnect(&mut connection, code, expiry).await;
                            let _ = done.send(());
                            return Ended::Closed;
                        }
                        Some(command) => self.handle_command(command),
                    }
                }
                () = sleep => {
                    if let Err(e) = self.protocol.handle_timeout(Instant::now()) {
                        connection.close().await;
                        return Ended::Lost(e);
                    }
                }
            }
        }
    }

    async fn send_disconnect(
        &mut self,
        connection: &mut Connection,
        code: ReasonCode,
        expiry: Option<u32>,
    ) {
        let packet = self.protocol.disconnect_packet(code, expiry);
        self.log(Direction::Sent, &packet);
        self.write_buf.clear();
        if tern_codec::encode(&packet, self.protocol.version(), &mut self.write_buf).is_ok() {
            let _ = connection.write(&self.write_buf).await;
        }
        self.write_buf.clear();
        connection.close().await;
    }

    /// Decodes every complete packet in the read buffer and feeds it to the protocol.
    fn handle_input(&mut self) -> Result<()> {
        let version = self.protocol.version();
        loop {
            let packet = tern_codec::decode(&mut self.read_buf, version, self.max_incoming)
                .map_err(|e| Error::Protocol(e.to_string()))?;
            let Some(packet) = packet else {
                return Ok(());
            };
            tracing::trace!(packet = packet.name(), "received");
            self.log(Direction::Received, &packet);
            self.protocol.handle_packet(packet, Instant::now())?;
        }
    }

    /// Writes everything the protocol wants to send.
    async fn flush(&mut self, connection: &mut Connection) -> Result<()> {
        let version = self.protocol.version();
        self.write_buf.clear();
        while let Some(packet) = self.protocol.poll_transmit(Instant::now()) {
            tracing::trace!(packet = packet.name(), "sending");
            self.log(Direction::Sent, &packet);
            tern_codec::encode(&packet, version, &mut self.write_buf)
                .map_err(|e| Error::Protocol(format!("cannot encode {}: {e}", packet.name())))?;
        }
        if !self.write_buf.is_empty() {
            connection.write(&self.write_buf).await?;
            self.write_buf.clear();
        }
        // Anything completed by the transmission (QoS 0) can now be reported.
        self.dispatch_outputs();
        Ok(())
    }

    /// While disconnected: waits `delay`, queueing requests. True when the client was closed.
    async fn wait_offline(&mut self, delay: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return false,
                command = self.commands.recv() => match command {
                    None => return true,
                    Some(Command::Disconnect(_, _, done)) => {
                        let _ = done.send(());
                        return true;
                    }
                    Some(command) => {
                        self.handle_command(command);
                        self.dispatch_outputs();
                    }
                },
            }
        }
    }

    fn log(&self, direction: Direction, packet: &Packet) {
        if let Some(log) = &self.options.packet_log {
            log.log(direction, packet);
        }
    }

    fn token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish(publish, reply) => {
                let token = self.token();
                match self.protocol.publish(token, publish) {
                    Ok(()) => {
                        self.waiters.insert(token, Waiter::Publish(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Subscribe(filters, properties, reply) => {
                let token = self.token();
                match self.protocol.subscribe(token, filters, properties) {
                    Ok(()) => {
                        self.waiters.insert(token, Waiter::Subscribe(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Unsubscribe(filters, properties, reply) => {
                let token = self.token();
                match self.protocol.unsubscribe(token, filters, properties) {
                    Ok(()) => {
                        self.waiters.insert(token, Waiter::Unsubscribe(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::AwaitResponse(correlation, reply) => {
                self.responders.insert(correlation, reply);
            }
            Command::ForgetResponse(correlation) => {
                self.responders.remove(&correlation);
            }
            Command::Disconnect(_, _, done) => {
                let _ = done.send(());
            }
        }
    }

    /// Hands completed requests and received messages to whoever waits for them.
    fn dispatch_outputs(&mut self) {
        while let Some(output) = self.protocol.poll_output() {
            match output {
                Output::Published(token, result) => {
                    if let Some(Waiter::Publish(reply)) = self.waiters.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                Output::Subscribed(token, result) => {
                    if let Some(Waiter::Subscribe(reply)) = self.waiters.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                Output::Unsubscribed(token, result) => {
                    if let Some(Waiter::Unsubscribe(reply)) = self.waiters.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                Output::Message(publish) => {
                    let responder = publish
                        .properties
                        .correlation_data
                        .as_ref()
                        .and_then(|c| self.responders.remove(c));
                    if let Some(reply) = responder {
                        let _ = reply.send(publish);
                        continue;
                    }
                    // A dropped receiver means nobody wants messages; that is fine.
                    let _ = self.messages.send(publish);
                }
            }
        }
    }
}
