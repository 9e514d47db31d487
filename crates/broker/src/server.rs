//! The tokio layer: listeners, and the task that drives one connection.
//!
//! A connection task only reads, feeds the [`Connection`] state machine, carries out its
//! [`Action`]s against the shared broker state, and writes. Outgoing packets are encoded into
//! one buffer and handed to a writer task whole, so whatever queued up while the previous write
//! was in progress goes out in a single `write_all` (few syscalls under load). Back-pressure:
//! while that buffer is above [`HIGH_WATER`], the task stops reading the socket and stops taking
//! deliveries from its mailbox, which then fills up to the session's queue limit.
//!
//! Any `AsyncRead + AsyncWrite` stream can be served ([`serve`]), so TLS and WebSocket
//! transports plug in in front of the same driver.

use crate::auth::AuthDecision;
use crate::broker::{BrokerError, Online, Shared, lock};
use crate::config::ListenerConfig;
use crate::message::Delivery;
use crate::protocol::{Accepted, Action, ConnectRequest, Connection, NewSubscription, Will};
use crate::router::RouteEntry;
use crate::session::SessionState;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tern_codec::{ByteStr, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Above this many encoded bytes waiting to be written, stop reading and stop pulling deliveries.
const HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection may take to flush its last packets.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new connection waits for the one it takes over to hand its session back.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds a listener and spawns its accept loop; returns the bound address.
pub(crate) async fn listen(
    shared: &Arc<Shared>,
    l: &ListenerConfig,
) -> Result<SocketAddr, BrokerError> {
    let err = |source| BrokerError::Bind {
        addr: l.bind,
        source,
    };
    let listener = TcpListener::bind(l.bind).await.map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let s = shared.clone();
    shared.tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = s.shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        // Without TCP_NODELAY small packets wait for delayed ACKs: a latency tail of
                        // tens of milliseconds.
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
                        }
                        let conn_shared = s.clone();
                        s.tracker.spawn(serve(conn_shared, stream, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    });
    Ok(addr)
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<BytesMut>) {
    while let Some(buf) = rx.recv().await {
        if wr.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

struct Driver {
    shared: Arc<Shared>,
    conn: Connection,
    conn_id: u64,
    peer: SocketAddr,
    client_id: Arc<str>,
    online: Option<Arc<Online>>,
}

/// Serves one MQTT connection over any byte stream until it ends.
pub(crate) async fn serve<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (wtx, wrx) = mpsc::channel::<BytesMut>(1);
    let writer = tokio::spawn(write_loop(wr, wrx));
    let conn = Connection::new(
        shared.proto.clone(),
        shared.authorizer.clone(),
        std::time::Instant::now(),
    );
    let mut d = Driver {
        conn_id: shared.next_id(),
        shared: shared.clone(),
        conn,
        peer,
        client_id: Arc::from(""),
        online: None,
    };
    let max_packet = shared.proto.max_packet_size as usize;
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::with_capacity(4096);
    let mut shutting_down = false;
    loop {
        d.process_actions().await;
        d.pull_mailbox(wbuf.len());
        d.encode(&mut wbuf);
        if d.conn.is_closed() {
            break;
        }
        let deadline = d.conn.poll_timeout().map(Instant::from_std);
        let online = d.online.clone();
        let wants = d.conn.wants_delivery();
        tokio::select! {
            _ = shared.shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                d.conn.close(ReasonCode::SERVER_SHUTTING_DOWN);
            }
            _ = async { match &online { Some(o) => o.kick.cancelled().await, None => std::future::pending().await } } => {
                d.conn.close(ReasonCode::SESSION_TAKEN_OVER);
            }
            permit = wtx.reserve(), if !wbuf.is_empty() => match permit {
                Ok(p) => p.send(wbuf.split()),
                Err(_) => d.conn.handle_connection_lost(),
            },
            r = rd.read_buf(&mut rbuf), if wbuf.len() < HIGH_WATER => match r {
                Ok(0) | Err(_) => d.conn.handle_connection_lost(),
                Ok(_) => d.decode_all(&mut rbuf, max_packet),
            },
            _ = async { match &online { Some(o) => o.notify.notified().await, None => std::future::pending().await } }, if wants => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                d.conn.handle_timeout(std::time::Instant::now());
            }
        }
    }
    // The Closed action has handed the session back; flush the last packets (CONNACK refusal,
    // DISCONNECT) and close the socket.
    d.process_actions().await;
    d.encode(&mut wbuf);
    if !wbuf.is_empty() {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, wtx.send(wbuf)).await;
    }
    drop(wtx);
    let abort = writer.abort_handle();
    if tokio::time::timeout(FLUSH_TIMEOUT, writer).await.is_err() {
        abort.abort();
    }
}

impl Driver {
    fn decode_all(&mut self, rbuf: &mut BytesMut, max_packet: usize) {
        loop {
            match tern_codec::decode(rbuf, self.conn.version(), max_packet) {
                Ok(Some(packet)) => {
                    self.conn.handle_packet(packet, std::time::Instant::now());
                    if self.conn.is_closed() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(client_id = %self.client_id, peer = %self.peer, error = %e, "bad packet, closing");
                    self.conn.handle_decode_error(e.reason_code());
                    return;
                }
            }
        }
    }

    fn encode(&mut self, wbuf: &mut BytesMut) {
        let version = self.conn.version();
        while let Some(p) = self.conn.poll_transmit() {
            if let Err(e) = tern_codec::encode(&p, version, wbuf) {
                tracing::warn!(client_id = %self.client_id, packet = p.name(), error = %e, "cannot encode packet");
            }
        }
    }

    fn pull_mailbox(&mut self, buffered: usize) {
        let Some(online) = &self.online else {
            return;
        };
        let now = std::time::Instant::now();
        while buffered < HIGH_WATER && self.conn.transmit_len() < 256 && self.conn.wants_delivery()
        {
            match online.pop() {
                Some(d) => self.conn.deliver(d, now),
                None => break,
            }
        }
    }

    async fn process_actions(&mut self) {
        let mut durable: Option<crate::store::Durable> = None;
        while let Some(action) = self.conn.poll_action() {
            match action {
                Action::Connect(req) => self.connect(req).await,
                Action::Publish(m) => {
                    let qos = m.qos;
                    let ticket = self.shared.publish(m);
                    // PUBACK/PUBREC go out only once the message is stored as durably as
                    // `[storage] durability` says; one wait covers every PUBLISH read so far.
                    if qos != tern_codec::QoS::AtMostOnce {
                        durable = Some(ticket);
                    }
                }
                Action::Subscribe(subs) => self.subscribe(subs),
                Action::Unsubscribe(filters) => {
                    for f in filters {
                        self.shared.router.unsubscribe(&self.client_id, &f);
                    }
                }
                Action::Closed { will, reason } => self.finalize(will, reason),
            }
        }
        if let Some(t) = durable.filter(|t| !t.is_done()) {
            if !t.wait().await {
                tracing::warn!(client_id = %self.client_id, "storage closed before the message was durable");
            }
        }
    }

    fn subscribe(&mut self, subs: Vec<NewSubscription>) {
        let now = std::time::Instant::now();
        for s in subs {
            let entry = RouteEntry {
                options: s.subscription.options,
                subscription_id: s.subscription.id,
            };
            self.shared
                .router
                .subscribe(&self.client_id, &s.filter, entry);
            if s.send_retained {
                // Retained messages go out with RETAIN set [MQTT-3.3.1-8].
                for m in self.shared.retained.matching(&s.filter, now) {
                    let qos = m.qos.min(s.subscription.options.qos);
                    self.conn.deliver(
                        Delivery {
                            message: m,
                            qos,
                            retain: true,
                            subscription_ids: s.subscription.id.into_iter().collect(),
                        },
                        now,
                    );
                }
            }
        }
    }

    async fn connect(&mut self, req: ConnectRequest) {
        let shared = self.shared.clone();
        let password = req.password.as_deref();
        match shared
            .authenticator
            .authenticate(&req.client_id, req.username.as_deref(), password)
        {
            AuthDecision::Allow => {}
            AuthDecision::BadCredentials => {
                tracing::info!(client_id = %req.client_id, peer = %self.peer, "bad user name or password");
                return self.conn.reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
            }
            AuthDecision::NotAuthorized => {
                tracing::info!(client_id = %req.client_id, peer = %self.peer, "not authorized");
                return self.conn.reject(ReasonCode::NOT_AUTHORIZED);
            }
        }
        let (client_id, assigned): (Arc<str>, Option<ByteStr>) = if req.client_id.is_empty() {
            let id = format!("tern-{:x}-{:x}", self.conn_id, std::process::id());
            (Arc::from(id.as_str()), Some(ByteStr::from(id)))
        } else {
            (Arc::from(req.client_id.as_str()), None)
        };
        let online = Arc::new(Online::new(self.conn_id));
        let deadline = Instant::now() + TAKEOVER_TIMEOUT;
        let (session, session_present) = loop {
            let existing = {
                let mut shard = shared.shard(&client_id);
                match shard.get(&client_id) {
                    Some(o) => o.clone(),
                    None => {
                        let resumed = self.take_session(&client_id, &req, &online);
                        shard.insert(client_id.clone(), online.clone());
                        break resumed;
                    }
                }
            };
            // Session takeover: the old connection is closed (v5: 0x8E) and hands its session
            // back before this one takes it [MQTT-3.1.4-3].
            tracing::info!(client_id = %client_id, "session taken over");
            existing.kick.cancel();
            tokio::select! {
                _ = existing.done.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return self.conn.reject(ReasonCode::SERVER_BUSY);
                }
            }
        };
        shared.cancel_pending_will(&client_id);
        shared
            .stats
            .clients_connected
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(client_id = %client_id, peer = %self.peer, version = ?req.version, clean_start = req.clean_start, session_present, "client connected");
        self.client_id = client_id;
        self.online = Some(online);
        self.conn.accept(
            Accepted {
                session,
                session_present,
                assigned_client_id: assigned,
            },
            std::time::Instant::now(),
        );
    }

    /// With the client's registry shard locked: resume or replace its stored session, moving
    /// queued messages to the new mailbox.
    fn take_session(
        &self,
        client_id: &Arc<str>,
        req: &ConnectRequest,
        online: &Online,
    ) -> (SessionState, bool) {
        let stored = self.shared.sessions.take(client_id);
        let (mut session, present) = match stored {
            Some(s) if !req.clean_start => (s, true),
            Some(old) => {
                // Clean Start discards the old session [MQTT-3.1.2-4].
                self.shared.unroute_session(&old);
                self.shared.sessions.remove(client_id);
                (
                    SessionState::new(client_id.clone(), req.session_expiry_interval),
                    false,
                )
            }
            None => (
                SessionState::new(client_id.clone(), req.session_expiry_interval),
                false,
            ),
        };
        session.expiry_interval = req.session_expiry_interval;
        let mut mb = lock(&online.mailbox);
        while let Some(d) = session.dequeue() {
            mb.bytes += d.queued_size();
            mb.queue.push_back(d);
        }
        (session, present)
    }

    /// The connection is over: hand the session back to the store (or drop it with its
    /// subscriptions when its expiry interval is 0), then deal with the will.
    fn finalize(&mut self, will: Option<Will>, reason: ReasonCode) {
        let Some(online) = self.online.take() else {
            tracing::debug!(peer = %self.peer, %reason, "connection closed before CONNACK");
            return;
        };
        let stats = self.conn.stats();
        let dropped = stats.dropped_expired + stats.dropped_too_large + stats.dropped_unauthorized;
        self.shared
            .stats
            .dropped_at_connection
            .fetch_add(dropped, Ordering::Relaxed);
        let mut expiry = 0;
        {
            let mut shard = self.shared.shard(&self.client_id);
            if shard
                .get(&self.client_id)
                .is_some_and(|o| o.conn_id == self.conn_id)
            {
                shard.remove(&self.client_id);
            }
            if let Some(mut session) = self.conn.take_session() {
                let mut mb = lock(&online.mailbox);
                for d in mb.queue.drain(..) {
                    session.queue_bytes += d.queued_size();
                    session.queue.push_back(d);
                }
                mb.bytes = 0;
                drop(mb);
                expiry = session.expiry_interval;
                if expiry == 0 {
                    self.shared.unroute_session(&session);
                    // Forget what an on-disk store still holds of the session it resumed.
                    self.shared.sessions.remove(&self.client_id);
                } else {
                    self.shared.sessions.put(session, std::time::Instant::now());
                }
            }
        }
        online.done.cancel();
        self.shared
            .stats
            .clients_connected
            .fetch_sub(1, Ordering::Relaxed);
        tracing::info!(client_id = %self.client_id, peer = %self.peer, %reason, will = will.is_some(), "client disconnected");
        if let Some(w) = will {
            self.shared.schedule_will(self.client_id.clone(), w, expiry);
        }
    }
}
