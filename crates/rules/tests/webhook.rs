//! Webhook actions against a small axum server on 127.0.0.1: delivery, retries on 500, no retry
//! on 404, and a hanging endpoint that times out while the queue drops (never blocking the caller).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tern_rules::{
    DispatcherConfig, MessageContext, MetricsSnapshot, RuleConfig, RuleSet, WebhookConfig,
    WebhookDispatcher,
};
use tokio::sync::Mutex;

#[derive(Default)]
struct Seen {
    hits: AtomicU64,
    last: Mutex<Option<(String, String, String)>>,
}

async fn server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let ok = Arc::clone(&seen);
    let fail = Arc::clone(&seen);
    let missing = Arc::clone(&seen);
    let hang = Arc::clone(&seen);
    let app = Router::new()
        .route(
            "/ok",
            post(move |headers: HeaderMap, body: String| async move {
                ok.hits.fetch_add(1, Ordering::SeqCst);
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                *ok.last.lock().await = Some((body, h("content-type"), h("x-device")));
                StatusCode::OK
            })
            .put(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/fail",
            post(move || async move {
                fail.hits.fetch_add(1, Ordering::SeqCst);
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route(
            "/missing",
            post(move || async move {
                missing.hits.fetch_add(1, Ordering::SeqCst);
                StatusCode::NOT_FOUND
            }),
        )
        .route(
            "/hang",
            post(move || async move {
                hang.hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::OK
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn rules(url: String, timeout_ms: u64, max_retries: u32, method: &str) -> RuleSet {
    RuleSet::from_config(&[RuleConfig {
        id: "hook".into(),
        sql: "SELECT payload.t AS t, clientid FROM \"s/#\"".into(),
        actions: vec![tern_rules::ActionConfig::Webhook(WebhookConfig {
            url,
            method: method.into(),
            headers: [("x-device".to_owned(), "${clientid}".to_owned())].into(),
            body: None,
            timeout_ms,
            max_retries,
        })],
        enabled: true,
        description: None,
    }])
    .unwrap()
}

fn dispatcher(queue: usize, concurrency: usize) -> WebhookDispatcher {
    let (d, _task) = WebhookDispatcher::start(DispatcherConfig {
        queue_capacity: queue,
        concurrency,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
    })
    .unwrap();
    d
}

fn message() -> MessageContext<'static> {
    let mut m = MessageContext::new("s/1", r#"{"t": 31}"#);
    m.clientid = "dev-7";
    m
}

async fn wait_for(set: &RuleSet, done: impl Fn(&MetricsSnapshot) -> bool) -> MetricsSnapshot {
    let start = Instant::now();
    loop {
        let m = set.rule("hook").unwrap().metrics();
        if done(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn webhook_delivers_selection_as_json_with_rendered_headers() {
    let (base, seen) = server().await;
    let set = rules(format!("{base}/ok"), 2000, 0, "POST");
    let d = dispatcher(16, 4);
    assert!(set.process(&message(), &d).is_empty());
    let m = wait_for(&set, |m| m.actions_succeeded == 1).await;
    assert_eq!((m.actions_failed, m.actions_dropped), (0, 0));
    let (body, content_type, device) = seen.last.lock().await.clone().unwrap();
    assert_eq!(body, r#"{"clientid":"dev-7","t":31}"#);
    assert_eq!(content_type, "application/json");
    assert_eq!(device, "dev-7");

    let put = rules(format!("{base}/ok"), 2000, 0, "PUT");
    put.process(&message(), &d);
    wait_for(&put, |m| m.actions_succeeded == 1).await;
}

#[tokio::test]
async fn webhook_500_is_retried_then_counted_failed() {
    let (base, seen) = server().await;
    let set = rules(format!("{base}/fail"), 2000, 2, "POST");
    let d = dispatcher(16, 4);
    set.process(&message(), &d);
    let m = wait_for(&set, |m| m.actions_failed == 1).await;
    assert_eq!(m.actions_succeeded, 0);
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        3,
        "one attempt and two retries"
    );
}

#[tokio::test]
async fn webhook_404_is_not_retried() {
    let (base, seen) = server().await;
    let set = rules(format!("{base}/missing"), 2000, 5, "POST");
    let d = dispatcher(16, 4);
    set.process(&message(), &d);
    wait_for(&set, |m| m.actions_failed == 1).await;
    assert_eq!(seen.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn webhook_connection_refused_fails_after_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let set = rules(format!("http://127.0.0.1:{port}/x"), 500, 1, "POST");
    let d = dispatcher(16, 4);
    set.process(&message(), &d);
    wait_for(&set, |m| m.actions_failed == 1).await;
}

#[tokio::test]
async fn hanging_endpoint_times_out_and_full_queue_drops_without_blocking() {
    let (base, seen) = server().await;
    let set = rules(format!("{base}/hang"), 150, 0, "POST");
    let d = dispatcher(2, 1);
    let start = Instant::now();
    for _ in 0..20 {
        set.process(&message(), &d);
    }
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "submitting must never wait: {:?}",
        start.elapsed()
    );
    let m = set.rule("hook").unwrap().metrics();
    assert!(m.actions_dropped >= 16, "{m:?}");
    assert_eq!(d.dropped(), m.actions_dropped);
    // The ones that were queued time out one by one (concurrency 1, 150 ms each).
    let m = wait_for(&set, |m| m.actions_failed + m.actions_dropped == 20).await;
    assert_eq!(m.actions_succeeded, 0);
    assert_eq!(seen.hits.load(Ordering::SeqCst), m.actions_failed);
}

#[tokio::test]
async fn webhook_with_an_invalid_header_fails_without_retrying() {
    let (base, seen) = server().await;
    let set = RuleSet::from_config(&[RuleConfig {
        id: "hook".into(),
        sql: "SELECT * FROM \"s/#\"".into(),
        actions: vec![tern_rules::ActionConfig::Webhook(WebhookConfig {
            url: format!("{base}/ok"),
            method: "POST".into(),
            headers: [("bad header".to_owned(), "x".to_owned())].into(),
            body: Some("${payload}".into()),
            timeout_ms: 1000,
            max_retries: 3,
        })],
        enabled: true,
        description: None,
    }])
    .unwrap();
    let d = dispatcher(4, 1);
    set.process(&message(), &d);
    wait_for(&set, |m| m.actions_failed == 1).await;
    assert_eq!(seen.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn https_to_a_plain_http_server_fails_cleanly() {
    // Exercises the rustls set-up (ring provider, no aws-lc): the handshake fails, no panic.
    let (base, _seen) = server().await;
    let set = rules(base.replace("http://", "https://") + "/ok", 1000, 1, "POST");
    let d = dispatcher(4, 1);
    set.process(&message(), &d);
    let m = wait_for(&set, |m| m.actions_failed == 1).await;
    assert_eq!(m.actions_succeeded, 0);
}
