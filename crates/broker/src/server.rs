//! The tokio layer: listeners, and the task that drives one connection.
//!
//! A connection task only reads, feeds the [`Connection`] state machine, carries out its
//! [`Action`]s against the shared broker state, and writes, all from the one task
//! ([`ConnIo`]: no writer task, no channel). Outgoing packets are encoded into one buffer, so
//! whatever queued up while the socket was busy goes out in a single write (few syscalls under
//! load). Back-pressure: while that buffer is above [`HIGH_WATER`], the task stops reading the
//! socket and stops taking deliveries from its mailbox, which then fills up to the session's
//! queue limit.
//!
//! Any `AsyncRead + AsyncWrite` stream can be served ([`serve`]), so TLS and WebSocket
//! transports plug in in front of the same driver.

use crate::auth::{AllowAll, AuthDecision, Authenticator, Authorizer, ClientIdentity};
use crate::broker::{BrokerError, Online, Pressure, Shared, lock};
use crate::config::{AuthConfig, ListenerConfig, ListenerProtocol};
use crate::message::Delivery;
use crate::protocol::{Accepted, Action, ConnectRequest, Connection, NewSubscription, Will};
use crate::router::RouteEntry;
use crate::session::{QueueLimits, SessionState};
use crate::transport::conn_io::{ConnIo, IoEvent};
use crate::transport::{ConnGuard, ListenerCtx, tls, ws};
use crate::wakeup::Signal;
use bytes::BytesMut;
use futures_util::future::Either;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;
use tern_codec::{ByteStr, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The authorizer of a connection when the broker has none: one for all, not an allocation
/// per connection.
static ALLOW_ALL: std::sync::LazyLock<Arc<dyn Authorizer>> =
    std::sync::LazyLock::new(|| Arc::new(AllowAll));

/// Above this many encoded bytes waiting to be written, stop reading and stop pulling deliveries.
const HIGH_WATER: usize = 256 * 1024;
/// Deliveries taken from the mailbox per lock of it.
const MAILBOX_BATCH: usize = 32;
/// How long a closing connection may take to flush its last packets.
/// Read and Write ACL decisions remembered per session (each side); the memo starts over when full.
const ACL_MEMO_TOPICS: usize = 1024;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new connection waits for the one it takes over to hand its session back.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds a listener and spawns its accept loop; returns the bound address.
pub(crate) async fn listen(
    shared: &Arc<Shared>,
    l: &ListenerConfig,
    auth: &AuthConfig,
) -> Result<SocketAddr, BrokerError> {
    let ctx = Arc::new(
        ListenerCtx::new(l, auth).map_err(|source| BrokerError::Listener {
            addr: l.bind,
            source,
        })?,
    );
    let err = |source| BrokerError::Bind {
        addr: l.bind,
        source,
    };
    let listener = TcpListener::bind(l.bind).await.map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    ctx.warn_if_exposed(addr);
    shared.transports.add_listener(ctx.clone());
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
                        let Some(guard) = s.transports.admit(&ctx, peer) else {
                            continue;
                        };
                        s.tracker.spawn(accept_transport(s.clone(), ctx.clone(), stream, peer, guard));
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

/// Serves a new TCP connection: straight to [`serve`] on a plain MQTT listener, else through
/// [`handshakes`]. `guard` holds the connection slot until the end.
///
/// A plain function: an `async fn` would keep its arguments in its state next to the
/// [`serve`] future they were moved into, for the whole connection.
fn accept_transport(
    shared: Arc<Shared>,
    ctx: Arc<ListenerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
) -> impl Future<Output = ()> + Send {
    if ctx.tls.is_none() && ctx.config.protocol == ListenerProtocol::Mqtt {
        // Plain MQTT over TCP: the task is the connection's future itself, one allocation,
        // sized for nothing but serving (no handshake state).
        Either::Left(serve(shared, ctx, None, stream, peer, Some(guard)))
    } else {
        Either::Right(boxed_handshakes(shared, ctx, stream, peer, guard))
    }
}

/// [`handshakes`] on the heap (see [`boxed_accept_ws`] for why a plain function).
fn boxed_handshakes(
    shared: Arc<Shared>,
    ctx: Arc<ListenerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
) -> std::pin::Pin<Box<impl Future<Output = ()> + Send>> {
    Box::pin(handshakes(shared, ctx, stream, peer, guard))
}

/// Runs the listener's TLS handshake, if any, within `connect_timeout`, then goes on with
/// [`accept_ws`]. A failed handshake is logged and counted; the socket is closed.
async fn handshakes(
    shared: Arc<Shared>,
    ctx: Arc<ListenerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
) {
    let Some(acceptor) = ctx.tls.clone() else {
        return accept_ws(shared, ctx, stream, peer, None, guard).await;
    };
    let timeout = shared.transports.handshake_timeout;
    let handshake = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        // Boxed, like every stage below: the connection's task then holds only the stage it is in
        // (a TLS or WebSocket state is kilobytes an idle plain-TCP connection must not carry).
        r = tokio::time::timeout(timeout, Box::pin(acceptor.accept(stream))) => r,
    };
    let failures = &shared.transports.counters.tls_handshake_failures;
    match handshake {
        Ok(Ok(tls_stream)) => {
            let identity = tls::peer_identity(&tls_stream);
            tracing::debug!(%peer, listener = %ctx.config.bind, certificate_identity = ?identity, "TLS handshake done");
            boxed_accept_ws(shared, ctx, tls_stream, peer, identity, guard).await;
        }
        Ok(Err(e)) => {
            failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, listener = %ctx.config.bind, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, listener = %ctx.config.bind, timeout_s = timeout.as_secs(), "TLS handshake timed out");
        }
    }
}

/// On a `ws` listener, runs the WebSocket handshake (path and subprotocol checked) within
/// `connect_timeout`; then serves MQTT. `guard` holds the connection slot until the end.
async fn accept_ws<S>(
    shared: Arc<Shared>,
    ctx: Arc<ListenerCtx>,
    stream: S,
    peer: SocketAddr,
    identity: Option<String>,
    guard: ConnGuard,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match ctx.config.protocol {
        // Not boxed: a plain TCP connection's task is this future, one allocation in all.
        ListenerProtocol::Mqtt => serve(shared, ctx, identity, stream, peer, Some(guard)).await,
        ListenerProtocol::Ws => {
            let timeout = shared.transports.handshake_timeout;
            // Room for the largest packet the broker accepts, whatever the framing.
            let max_message = (shared.proto.max_packet_size as usize).saturating_add(16);
            let path = ctx.config.ws_path().to_string();
            let handshake = tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                r = tokio::time::timeout(timeout, Box::pin(ws::accept(stream, &path, max_message))) => r,
            };
            let failures = &shared.transports.counters.ws_handshake_failures;
            match handshake {
                Ok(Ok(ws_stream)) => {
                    boxed_serve(shared, ctx, identity, ws_stream, peer, guard).await
                }
                Ok(Err(e)) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%peer, listener = %ctx.config.bind, error = %e, "WebSocket handshake refused");
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%peer, listener = %ctx.config.bind, "WebSocket handshake timed out");
                }
            }
        }
    }
}

/// [`accept_ws`] on the heap. Boxed in a plain function: a future built in an `async fn`
/// takes room in that function's state even when only its box lives across the `.await`.
fn boxed_accept_ws<S>(
    shared: Arc<Shared>,
    ctx: Arc<ListenerCtx>,
    stream: S,
    peer: SocketAddr,
    identity: Option<String>,
    guard: ConnGuard,
) -> std::pin::Pin<Box<impl Future<Output = ()> + Send>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(accept_ws(shared, ctx, stream, peer, identity, guard))
}

/// [`serve`] on the heap, for the same reason as [`boxed_accept_ws`].
fn boxed_serve<S>(
    shared: Arc<Shared>,
    ctx: Arc<ListenerCtx>,
    cert_identity: Option<String>,
    stream: S,
    peer: SocketAddr,
    guard: ConnGuard,
) -> std::pin::Pin<Box<impl Future<Output = ()> + Send>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(serve(shared, ctx, cert_identity, stream, peer, Some(guard)))
}

/// Resolves once every mailbox in `full` has room (or its connection is gone). The pause's
/// time limit is the connection's timer.
async fn wait_room(full: Vec<Arc<Online>>, limits: QueueLimits) {
    for o in &full {
        o.room(limits).await;
    }
}

/// What ended one wait of a connection's task.
enum Woke {
    /// The broker is shutting down.
    Shutdown,
    /// A new connection takes the session over.
    Kicked,
    /// The socket was written or read, or is closed.
    Io(IoEvent),
    /// Deliveries may be waiting in the mailbox.
    Mail,
    /// The oldest held packets' writes are durable (false: the store stopped).
    Durable(bool),
    /// Every mailbox that paused this publisher has room.
    Room,
    /// A deadline passed (keep-alive or CONNECT, publish-rate pause, back-pressure pause).
    Timer,
}

struct Driver {
    shared: Arc<Shared>,
    conn: Connection,
    peer: SocketAddr,
    client_id: Arc<str>,
    /// The user name the client authenticated with (the certificate's with
    /// `use_identity_as_username`), put on each message it publishes.
    username: Option<Arc<str>>,
    online: Option<Arc<Online>>,
    /// The listener's policy (auth, ACL) for this connection.
    ctx: Arc<ListenerCtx>,
    /// CN or SAN of the verified TLS client certificate, if any.
    cert_identity: Option<Box<str>>,
    /// Publish rate limit state (see [`Driver::charge_publish`]); boxed, and only with a
    /// `max_publish_rate`.
    rate: Option<Box<RateBucket>>,
    /// Limits already logged for this client (bits of `LOGGED_*`), so each is logged once.
    logged: u8,
    /// Subscribers' mailboxes this connection's PUBLISHes filled over their limit: while there
    /// are any, the connection does not read (see [`Driver::paused_until`]).
    pressure: Pressure,
    /// When the current pause ends at the latest (`slow_consumer_timeout` after it began).
    paused_until: Option<Instant>,
    /// Packets waiting for writes to be durable; boxed, and only while there are any (an idle
    /// connection does not carry it).
    held: Option<Box<Held>>,
    /// Writes were made that the packets queued now depend on: [`Driver::encode`] holds them.
    needs_durable: bool,
}

/// Packets that must not go out before writes are durable (PUBACK/PUBREC after their message
/// is stored, SUBACK, QoS 2 steps of a persistent session). See [`Driver::encode`]; the
/// connection goes on reading meanwhile.
#[derive(Default)]
struct Held {
    /// Tickets, oldest first, each with the number of packets taken from the connection
    /// (counting from when this started) up to which it holds them back.
    tickets: std::collections::VecDeque<(crate::store::Durable, u64)>,
    /// Packets taken from the connection since this started.
    taken: u64,
    /// How many packets may be taken: the end of the last ticket resolved.
    released: u64,
}

/// Holds (read batches waiting for their fsync) after which a connection stops reading.
const MAX_HELD: usize = 64;

const LOGGED_RATE: u8 = 1;

/// A token bucket of PUBLISH packets: `rate` per second, bursts of up to one second's worth.
struct RateBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    /// While set, the connection does not read from its socket.
    throttled_until: Option<Instant>,
}

impl RateBucket {
    /// A full bucket of `rate` PUBLISH packets per second; none when `rate` is 0 (no limit).
    fn new(rate: u32) -> Option<Box<Self>> {
        let rate = f64::from(rate);
        (rate > 0.0).then(|| {
            Box::new(RateBucket {
                rate,
                tokens: rate,
                last: Instant::now(),
                throttled_until: None,
            })
        })
    }
}

/// Serves one MQTT connection over any byte stream until it ends, with the policy of the
/// listener it came from and the identity of its TLS client certificate; `guard`, if any, holds
/// the connection's slot until then.
///
/// The driver and the buffers are built here and moved into the returned future, which uses
/// them in place: an `async fn` would keep its arguments in its state beside what they were
/// moved into, for the whole connection.
pub(crate) fn serve<S>(
    shared: Arc<Shared>,
    ctx: Arc<ListenerCtx>,
    cert_identity: Option<String>,
    stream: S,
    peer: SocketAddr,
    guard: Option<ConnGuard>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut io = ConnIo::new(stream);
    let authorizer = shared
        .authorizer
        .clone()
        .unwrap_or_else(|| ALLOW_ALL.clone());
    let conn = Connection::new(shared.proto.clone(), authorizer, std::time::Instant::now());
    let conn_id = shared.next_id();
    let mut d = Driver {
        shared: shared.clone(),
        conn,
        peer,
        client_id: Arc::from(""),
        username: None,
        online: None,
        ctx,
        cert_identity: cert_identity.map(String::into_boxed_str),
        rate: RateBucket::new(shared.transports.topic_limits.max_publish_rate),
        logged: 0,
        pressure: Pressure {
            conn_id,
            full: Vec::new(),
        },
        paused_until: None,
        held: None,
        needs_durable: false,
    };
    async move {
        let mut shutting_down = false;
        // Both live across the loop's turns: the timer is moved, not registered anew, when a
        // deadline changes (every packet moves the keep-alive deadline).
        let mut shutdown = std::pin::pin!(shared.shutdown.cancelled());
        let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
        loop {
            d.process_actions().await;
            d.pull_mailbox(io.unwritten());
            d.encode(&mut io.wbuf);
            if d.conn.is_closed() {
                break;
            }
            if io.wbuf.is_empty() && io.rbuf.is_empty() {
                // Nothing to write and no partial packet: what the connection holds while it waits
                // is what an idle connection costs, so let go of every empty buffer and queue.
                io.release_idle();
                d.conn.release_idle();
            }
            let wants = d.conn.wants_delivery();
            let read = io.unwritten() < HIGH_WATER && d.may_read();
            // The oldest packets waiting for durability go out once their ticket resolves. Boxed,
            // and only while there are any: an idle connection's future does not carry the wait.
            let held = d
                .held
                .as_ref()
                .and_then(|h| h.tickets.front())
                .map(|(t, _)| Box::pin(t.clone().wait()));
            // Only while paused, and boxed: the wait (hundreds of bytes) would otherwise size every
            // connection's future. Cloned: the wait below must not borrow `d`.
            let room = d
                .paused_until
                .map(|_| Box::pin(wait_room(d.pressure.full.clone(), d.shared.proto.queue)));
            let timed = match d.wake_at() {
                Some(at) => {
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    true
                }
                None => false,
            };
            let online = d.online.as_deref();
            // A hand-written select: the mailbox and a takeover wake the task through the client's
            // `Online` entry, so the future holds no waiter for them. The socket comes right after
            // the shutdown and a takeover: a stream of deliveries must not keep it from being
            // written and read (the mailbox is looked at on every turn anyway). What the wait
            // needs is moved into it, so the connection's future holds each once.
            let mut wait = (shutdown.as_mut(), timer.as_mut(), &mut io, held, room);
            let woke = std::future::poll_fn(move |cx| {
                let (shutdown, timer, io, held, room) = &mut wait;
                if !shutting_down && shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Shutdown);
                }
                let signal = online.map(|o| o.wakeup.poll(cx, wants));
                if signal == Some(Poll::Ready(Signal::Kicked)) {
                    return Poll::Ready(Woke::Kicked);
                }
                if let Poll::Ready(ev) = io.poll_io(cx, read) {
                    return Poll::Ready(Woke::Io(ev));
                }
                if signal == Some(Poll::Ready(Signal::Mail)) {
                    return Poll::Ready(Woke::Mail);
                }
                if let Some(h) = held
                    && let Poll::Ready(durable) = h.as_mut().poll(cx)
                {
                    return Poll::Ready(Woke::Durable(durable));
                }
                // Back-pressure: a subscriber's mailbox was over its limit because of our PUBLISHes.
                if let Some(r) = room
                    && r.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Woke::Room);
                }
                if timed && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Timer);
                }
                Poll::Pending
            })
            .await;
            match woke {
                Woke::Shutdown => {
                    shutting_down = true;
                    d.conn.close(ReasonCode::SERVER_SHUTTING_DOWN);
                }
                Woke::Kicked => d.conn.close(ReasonCode::SESSION_TAKEN_OVER),
                // Writes whatever is buffered; reads unless back-pressure or a limit says not to.
                Woke::Io(IoEvent::Closed) => d.conn.handle_connection_lost(),
                Woke::Io(IoEvent::Read) => d.decode_all(&mut io.rbuf),
                Woke::Io(IoEvent::Wrote) | Woke::Mail => {}
                Woke::Durable(durable) => {
                    if !durable {
                        // The store stopped: nothing more will become durable, keep nothing back.
                        d.held = None;
                    }
                }
                Woke::Room => d.end_pause(),
                Woke::Timer => d.deadlines_passed(&mut io.rbuf),
            }
        }
        // The Closed action has handed the session back; flush the last packets (CONNACK refusal,
        // DISCONNECT) and close the socket.
        d.process_actions().await;
        // Once a client sees its connection close, the session it handed back (what it
        // acknowledged) is as durable as `[storage] durability` says: no redelivery after a crash.
        // Both boxed: once per connection, and their state would size every connection's future.
        d.boxed_settle().await;
        d.encode(&mut io.wbuf);
        boxed_finish(&mut io).await;
        drop(guard);
    }
}

/// Flushes and shuts the stream down within [`FLUSH_TIMEOUT`], on the heap (see
/// [`boxed_accept_ws`] for why a plain function).
fn boxed_finish<S>(io: &mut ConnIo<S>) -> std::pin::Pin<Box<impl Future<Output = ()> + Send + '_>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    Box::pin(async move {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, io.finish()).await;
    })
}

impl Driver {
    /// This connection's id (kept once, in `pressure`).
    fn conn_id(&self) -> u64 {
        self.pressure.conn_id
    }

    /// Whether the socket may be read: not over `max_publish_rate`, not paused by a full
    /// subscriber, not too many packets waiting for durability.
    fn may_read(&self) -> bool {
        self.throttled_until().is_none()
            && self.paused_until.is_none()
            && self
                .held
                .as_ref()
                .is_none_or(|h| h.tickets.len() < MAX_HELD)
    }

    /// The earliest deadline, for the connection's one timer: the end of a publish-rate pause,
    /// the end of a back-pressure pause, the keep-alive or CONNECT deadline (not while paused:
    /// the broker is the silent one then).
    fn wake_at(&self) -> Option<Instant> {
        let paused = self.paused_until;
        let deadline = self.conn.poll_timeout().map(Instant::from_std);
        [
            self.throttled_until(),
            paused,
            deadline.filter(|_| paused.is_none()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The timer fired: acts on whichever deadline of [`Driver::wake_at`] has passed.
    fn deadlines_passed(&mut self, rbuf: &mut BytesMut) {
        let now = Instant::now();
        if self.throttled_until().is_some_and(|t| t <= now) {
            if let Some(r) = self.rate.as_deref_mut() {
                r.throttled_until = None;
            }
            // Packets read before the pause are still waiting in the buffer.
            self.decode_all(rbuf);
        }
        if let Some(paused) = self.paused_until {
            if paused <= now {
                // `slow_consumer_timeout` is over: go on even without room.
                self.end_pause();
            }
        } else if self
            .conn
            .poll_timeout()
            .is_some_and(|t| Instant::from_std(t) <= now)
        {
            let before = self.conn.phase();
            self.conn.handle_timeout(std::time::Instant::now());
            if before == crate::protocol::Phase::AwaitConnect && self.conn.is_closed() {
                self.shared
                    .transports
                    .counters
                    .connect_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %self.peer, timeout_s = self.shared.proto.connect_timeout.as_secs(), "no CONNECT within connect_timeout, closing");
            }
        }
    }

    /// The back-pressure pause is over (room in every mailbox, or `slow_consumer_timeout`).
    fn end_pause(&mut self) {
        self.pressure.full.clear();
        self.paused_until = None;
        // The broker, not the client, was silent: the keep-alive starts again.
        self.conn.touch(std::time::Instant::now());
    }

    fn decode_all(&mut self, rbuf: &mut BytesMut) {
        let max_packet = self.shared.proto.max_packet_size as usize;
        loop {
            // Over the publish rate: the rest waits until the pause ends.
            if self.throttled_until().is_some() {
                return;
            }
            match tern_codec::decode(rbuf, self.conn.version(), max_packet) {
                Ok(Some(packet)) => {
                    if !self.within_limits(&packet) {
                        return;
                    }
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

    /// Applies `max_topic_length`, `max_topic_levels` and `max_publish_rate` to a packet before
    /// the state machine sees it. A topic over the limits closes the connection (v5: DISCONNECT
    /// 0x90 or 0x8F); going over the publish rate makes the driver stop reading for a while.
    fn within_limits(&mut self, packet: &tern_codec::Packet) -> bool {
        let limits = self.shared.transports.topic_limits;
        let bad = match packet {
            tern_codec::Packet::Publish(p) => {
                self.charge_publish();
                (!crate::transport::topic_within_limits(&p.topic, &limits))
                    .then_some((ReasonCode::TOPIC_NAME_INVALID, p.topic.as_str()))
            }
            tern_codec::Packet::Subscribe(s) => s
                .filters
                .iter()
                .find(|(f, _)| !crate::transport::topic_within_limits(f, &limits))
                .map(|(f, _)| (ReasonCode::TOPIC_FILTER_INVALID, f.as_str())),
            _ => None,
        };
        let Some((reason, topic)) = bad else {
            return true;
        };
        self.shared
            .transports
            .counters
            .topic_limit
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(client_id = %self.client_id, peer = %self.peer, topic_length = topic.len(), max_topic_length = limits.max_length, max_topic_levels = limits.max_levels, "topic over max_topic_length or max_topic_levels, closing");
        self.conn.handle_decode_error(reason);
        false
    }

    /// Until when the connection is over `max_publish_rate` (it does not read meanwhile).
    fn throttled_until(&self) -> Option<Instant> {
        self.rate.as_ref().and_then(|r| r.throttled_until)
    }

    /// Takes one PUBLISH from the client's rate bucket; when it is empty, reading pauses until
    /// a token is back (the client is slowed down, nothing is dropped).
    fn charge_publish(&mut self) {
        let Some(b) = self.rate.as_deref_mut() else {
            return;
        };
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * b.rate).min(b.rate) - 1.0;
        if b.tokens < 0.0 {
            b.throttled_until = Some(now + Duration::from_secs_f64(-b.tokens / b.rate));
            if self.logged & LOGGED_RATE == 0 {
                self.logged |= LOGGED_RATE;
                self.shared
                    .transports
                    .counters
                    .publish_rate_limited
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(client_id = %self.client_id, peer = %self.peer, max_publish_rate = b.rate, "client over max_publish_rate, slowing it down");
            }
        }
    }

    /// Encodes the packets that may go out. Packets queued after writes they depend on
    /// (`needs_durable`) are held until those writes are durable: a ticket is taken now, and
    /// they, and everything queued behind them, wait for it, in order. The connection goes on
    /// reading and routing meanwhile, so one fsync covers what it reads while the previous one
    /// runs (pipelining).
    fn encode(&mut self, wbuf: &mut BytesMut) {
        self.flush_flow();
        if std::mem::take(&mut self.needs_durable) {
            let ticket = self
                .shared
                .sessions
                .durable()
                .and(self.shared.retained.durable());
            if !ticket.is_done() {
                let h = self.held.get_or_insert_default();
                let end = h.taken + self.conn.transmit_len() as u64;
                h.tickets.push_back((ticket, end));
            }
        }
        let mut limit = u64::MAX;
        if let Some(h) = self.held.as_mut() {
            while let Some((t, end)) = h.tickets.front() {
                if !t.is_done() {
                    break;
                }
                h.released = *end;
                h.tickets.pop_front();
            }
            if h.tickets.is_empty() {
                self.held = None;
            } else {
                limit = h.released - h.taken;
            }
        }
        let version = self.conn.version();
        let mut taken = 0;
        while taken < limit {
            let Some(p) = self.conn.poll_transmit() else {
                break;
            };
            taken += 1;
            if let Err(e) = tern_codec::encode(&p, version, wbuf) {
                tracing::warn!(client_id = %self.client_id, packet = p.name(), error = %e, "cannot encode packet");
            }
        }
        if let Some(h) = self.held.as_mut() {
            h.taken += taken;
        }
    }

    /// Hands the in-flight changes of a persistent session to the store, in order; those a
    /// packet depends on make [`Driver::encode`] hold it until they are durable.
    fn flush_flow(&mut self) {
        let changes = self.conn.take_flow();
        if changes.is_empty() {
            return;
        }
        if changes.iter().any(crate::store::FlowChange::gates_transmit) {
            self.needs_durable = true;
        }
        self.shared.sessions.record_flow(&self.client_id, &changes);
    }

    /// [`Driver::settle`] on the heap (see [`boxed_accept_ws`] for why a plain function).
    fn boxed_settle(&mut self) -> std::pin::Pin<Box<impl Future<Output = ()> + Send + '_>> {
        Box::pin(self.settle())
    }

    /// Waits until every write made so far is durable and releases every held packet (the
    /// connection is closing).
    async fn settle(&mut self) {
        self.flush_flow();
        self.needs_durable = false;
        let ticket = self
            .shared
            .sessions
            .durable()
            .and(self.shared.retained.durable());
        if !ticket.is_done() && !ticket.wait().await {
            tracing::warn!(client_id = %self.client_id, "storage closed before the session was durable");
        }
        self.held = None;
    }

    fn pull_mailbox(&mut self, buffered: usize) {
        let Some(online) = &self.online else {
            return;
        };
        let now = std::time::Instant::now();
        let limits = &self.shared.proto.queue;
        let conn = &mut self.conn;
        let wants =
            |c: &Connection| buffered < HIGH_WATER && c.transmit_len() < 256 && c.wants_delivery();
        // A batch per lock of the mailbox, not a lock per delivery.
        while wants(conn) {
            let taken = online.pop_while(limits, MAILBOX_BATCH, |d| {
                conn.deliver(d, now);
                wants(conn)
            });
            if taken < MAILBOX_BATCH {
                break;
            }
        }
    }

    /// Carries out the state machine's actions; CONNECT's (authentication, takeover) on the
    /// heap, being once per connection.
    async fn process_actions(&mut self) {
        // The request goes straight into the box: held across the wait, it would size every
        // connection's future.
        while let Some(connect) = self.run_actions().map(|req| self.boxed_connect(req)) {
            connect.await;
        }
    }

    /// Carries out the state machine's actions up to a CONNECT, which it returns for
    /// [`Driver::connect`], or all of them. Not `async`: an action in hand is hundreds of bytes
    /// that would size every connection's future.
    fn run_actions(&mut self) -> Option<ConnectRequest> {
        // A persistent session's incoming QoS 2 messages are routed, and their packet
        // identifiers recorded, in one store unit: a crash cannot keep the routed copies without
        // the identifier (which would let the resent PUBLISH be routed twice).
        let mut unit = false;
        while let Some(action) = self.conn.poll_action() {
            match action {
                // Carried out by `process_actions`, boxed: once per connection, and its state
                // (authentication, takeover) would otherwise size every idle connection's future.
                Action::Connect(req) => {
                    if unit {
                        self.shared.sessions.end_unit();
                    }
                    return Some(req);
                }
                Action::Publish(mut m) => {
                    if !unit
                        && m.qos == tern_codec::QoS::ExactlyOnce
                        && self.online.as_ref().is_some_and(|o| o.persistent)
                    {
                        self.shared.sessions.begin_unit();
                        unit = true;
                    }
                    // The state machine has just built it: not shared yet, so no copy.
                    if let Some(msg) = Arc::get_mut(&mut m) {
                        msg.username.clone_from(&self.username);
                    }
                    let qos = m.qos;
                    // The ticket of what this wrote is taken in `encode`, after this batch.
                    let _ = self.shared.publish_from(m, Some(&mut self.pressure));
                    // PUBACK/PUBREC go out only once the message is stored as durably as
                    // `[storage] durability` says (held in `encode`).
                    if qos != tern_codec::QoS::AtMostOnce {
                        self.needs_durable = true;
                    }
                }
                Action::Subscribe(subs) => {
                    self.subscribe(subs);
                    self.save_session();
                    self.needs_durable = true;
                }
                Action::Unsubscribe(filters) => {
                    for f in filters {
                        self.shared.router.unsubscribe(&self.client_id, &f);
                    }
                    self.save_session();
                    self.needs_durable = true;
                }
                Action::Closed { will, reason } => {
                    // What the connection changed goes in before the session is handed back.
                    self.flush_flow();
                    self.finalize(will.map(|w| *w), reason);
                }
            }
        }
        // After the routing above: an incoming QoS 2 identifier is recorded after its message.
        self.flush_flow();
        if unit {
            self.shared.sessions.end_unit();
        }
        if !self.pressure.full.is_empty() && self.paused_until.is_none() {
            self.paused_until = Some(Instant::now() + self.shared.slow_consumer_timeout);
            self.shared
                .stats
                .publishers_paused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client_id = %self.client_id, "subscriber queue full, publisher paused");
        }
        None
    }

    /// Records the connected session's subscriptions in the store; SUBACK/UNSUBACK wait for it.
    fn save_session(&self) {
        if let Some(session) = self.conn.session() {
            self.shared.sessions.save(session);
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
                let persistent = self.online.as_ref().is_some_and(|o| o.persistent);
                for m in self.shared.retained.matching(&s.filter, now) {
                    let qos = m.qos.min(s.subscription.options.qos);
                    let mut d = Delivery {
                        message: m,
                        qos,
                        retain: true,
                        subscription_ids: s.subscription.id.into_iter().collect(),
                        store_seq: 0,
                    };
                    if persistent {
                        self.shared
                            .sessions
                            .persist_delivery(&self.client_id, &mut d);
                    }
                    self.conn.deliver(d, now);
                }
            }
        }
    }

    /// [`Driver::connect`] on the heap (see [`boxed_accept_ws`] for why a plain function).
    fn boxed_connect(
        &mut self,
        req: ConnectRequest,
    ) -> std::pin::Pin<Box<impl Future<Output = ()> + Send + '_>> {
        Box::pin(self.connect(req))
    }

    async fn connect(&mut self, req: ConnectRequest) {
        let shared = self.shared.clone();
        let tables = self.ctx.auth.load_full();
        let Some(username) = self.authenticate(&req, &tables).await else {
            return;
        };
        let (client_id, assigned): (Arc<str>, Option<ByteStr>) = if req.client_id.is_empty() {
            // Random, so an id assigned now never names a session stored by an earlier run.
            let id = format!("tern-{:016x}", rand::random::<u64>());
            (Arc::from(id.as_str()), Some(ByteStr::from(id)))
        } else {
            (Arc::from(req.client_id.as_str()), None)
        };
        let persistent = req.session_expiry_interval != 0;
        let online = Arc::new(Online::new(self.conn_id(), persistent));
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
            existing.wakeup.kick();
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
        self.username = username.as_deref().map(Arc::from);
        self.online = Some(online);
        // The ACL is resolved once per session, with the final client id and user name
        // (the certificate's with `use_identity_as_username`).
        let who = ClientIdentity {
            client_id: self.client_id.to_string(),
            username,
        };
        match (&shared.authorizer, &tables.acl) {
            // A custom authorizer is asked about this identity, not the CONNECT's user name.
            (Some(custom), _) => {
                self.conn
                    .set_authorizer(Arc::new(crate::transport::FixedIdentity::new(
                        custom.clone(),
                        who,
                    )))
            }
            // Topics repeat per session: a memo makes the usual check one hash lookup.
            (None, Some(acl)) => self
                .conn
                .set_authorizer(Arc::new(crate::auth::AclCache::new(
                    acl.session(&who),
                    ACL_MEMO_TOPICS,
                ))),
            (None, None) => {}
        }
        self.conn.accept(
            Accepted {
                session,
                session_present,
                assigned_client_id: assigned,
            },
            std::time::Instant::now(),
        );
        // A new persistent session is on disk from now on (a resumed one already is, marked
        // online): a crash while it is connected keeps it.
        if !session_present && let Some(s) = self.conn.session().filter(|s| s.expiry_interval != 0)
        {
            shared.sessions.save(s);
        }
    }

    /// Checks the CONNECT's credentials after the address's login back-off, if any: a custom
    /// authenticator, or the certificate identity (`use_identity_as_username`), or the listener's
    /// anonymous policy and password file. Returns the user name the ACL applies to; on refusal
    /// the CONNACK is queued and `None` returned.
    async fn authenticate(
        &mut self,
        req: &ConnectRequest,
        tables: &crate::transport::AuthTables,
    ) -> Option<Option<String>> {
        let ip = self.peer.ip();
        let backoff = lock(&self.shared.transports.backoff).delay(ip, std::time::Instant::now());
        if !backoff.is_zero() {
            // Only this connection waits; the broker goes on.
            tracing::debug!(peer = %self.peer, delay_ms = backoff.as_millis() as u64, "login back-off");
            tokio::time::sleep(backoff).await;
        }
        let password = req.password.as_deref();
        let cert_user = self
            .cert_identity
            .as_deref()
            .map(str::to_string)
            .filter(|_| self.ctx.identity_as_username());
        let (decision, username) = match (&self.shared.authenticator, &cert_user) {
            (Some(custom), _) => (
                custom.authenticate(&req.client_id, req.username.as_deref(), password),
                req.username.as_ref().map(|u| u.to_string()),
            ),
            // The certificate was verified against client_ca: it is the credential.
            (None, Some(user)) => (AuthDecision::Allow, Some(user.clone())),
            (None, None) => (
                tables.authenticator.authenticate(
                    &req.client_id,
                    req.username.as_deref(),
                    password,
                ),
                req.username.as_ref().map(|u| u.to_string()),
            ),
        };
        let reason = match decision {
            AuthDecision::Allow => {
                if req.username.is_some() && password.is_some() {
                    lock(&self.shared.transports.backoff).record_success(ip);
                }
                return Some(username);
            }
            AuthDecision::BadCredentials => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            AuthDecision::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
        };
        let now = std::time::Instant::now();
        let next_delay = {
            let mut backoff = lock(&self.shared.transports.backoff);
            // Forget quiet addresses now and then; the table's capacity bounds it regardless.
            if backoff.len() >= 1024 && backoff.len().is_power_of_two() {
                backoff.prune(now);
            }
            backoff.record_failure(ip, now)
        };
        self.shared
            .transports
            .counters
            .login_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            client_id = %req.client_id, peer = %self.peer, username = ?req.username.as_deref(),
            listener = %self.ctx.config.bind, %reason, next_delay_ms = next_delay.as_millis() as u64,
            "login refused"
        );
        self.conn.reject(reason);
        None
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
                .is_some_and(|o| o.conn_id == self.conn_id())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Broker;
    use crate::config::{Config, ListenerConfig};

    /// An idle connection's memory is mostly its task (issue 8: at most 2 KiB of RSS per idle
    /// connection), so a plain TCP connection's task must not grow unnoticed.
    #[tokio::test]
    async fn plain_tcp_connection_task_stays_small() {
        let config = Config {
            listeners: vec![ListenerConfig::mqtt("127.0.0.1:0".parse().unwrap())],
            ..Config::default()
        };
        let running = Broker::new(config).start().await.unwrap();
        let addr = running.local_addrs()[0];
        let shared = running.shared().clone();
        let ctx = shared.transports.external.clone();
        let client = TcpStream::connect(addr).await.unwrap();
        let peer = client.local_addr().unwrap();
        let guard = shared.transports.admit(&ctx, peer).unwrap();
        let task = accept_transport(shared.clone(), ctx, client, peer, guard);
        let size = std::mem::size_of_val(&task);
        eprintln!(
            "plain TCP connection future: {size} B (Driver {} B, Connection {} B)",
            std::mem::size_of::<Driver>(),
            std::mem::size_of::<Connection>()
        );
        // Tokio adds its header and trailer (about 110 B) and rounds the task to 128 B: up to
        // this size, the task is 1,152 B (1,920 B before the hand-written wait).
        assert!(size <= 1040, "{size} B");
        drop(task);
        running.shutdown().await;
    }
}
