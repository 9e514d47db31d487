//! Webhook delivery: a bounded queue in front of a few concurrent HTTP senders.
//!
//! [`WebhookDispatcher::submit`] never waits: when the queue is full the job is dropped, counted on
//! its rule (`actions_dropped`) and on the dispatcher, and logged (rate-limited), so a slow or dead
//! endpoint cannot slow the router. Each job is attempted up to `1 + max_retries` times with its own
//! timeout per attempt and exponential back-off between attempts; connection errors, timeouts, 429
//! and 5xx are retried, other statuses fail at once.
//!
//! The HTTP client (TLS roots, connection pool) is built on the first job, not at start: loading
//! the root certificates costs a broker with no webhook rule ~10 M instructions at start-up.
//!
//! Shutdown: drop every clone of the dispatcher; the worker finishes the queued and in-flight jobs
//! and the [`tokio::task::JoinHandle`] returned by [`WebhookDispatcher::start`] completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::ruleset::{HttpMethod, WebhookJob};

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Jobs waiting to be sent; past this, new jobs are dropped.
    pub queue_capacity: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Delay before the first retry; doubled for each further one.
    pub backoff_base: Duration,
    /// Upper bound of the delay between retries.
    pub backoff_max: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            queue_capacity: 1024,
            concurrency: 16,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// `queue_capacity` or `concurrency` is 0.
    #[error("webhook dispatcher: {0} must be at least 1")]
    Zero(&'static str),
}

/// Handle to the webhook queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookDispatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<WebhookJob>,
    dropped: AtomicU64,
}

impl WebhookDispatcher {
    /// Starts the worker on the current tokio runtime; the HTTP client is built on the first
    /// job. Installs rustls' ring provider as the process default if none is installed yet.
    pub fn start(
        cfg: DispatcherConfig,
    ) -> Result<(WebhookDispatcher, tokio::task::JoinHandle<()>), WebhookError> {
        if cfg.queue_capacity == 0 {
            return Err(WebhookError::Zero("queue_capacity"));
        }
        if cfg.concurrency == 0 {
            return Err(WebhookError::Zero("concurrency"));
        }
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: some provider is then installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let handle = tokio::spawn(run(rx, cfg));
        Ok((
            WebhookDispatcher {
                inner: Arc::new(Inner {
                    tx,
                    dropped: AtomicU64::new(0),
                }),
            },
            handle,
        ))
    }

    /// Queues `job` without waiting; returns false (and counts a drop) when the queue is full or
    /// the worker has stopped.
    pub fn submit(&self, job: WebhookJob) -> bool {
        match self.inner.tx.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                job.metrics.action_dropped();
                let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // One line per power of two, so a dead endpoint under load does not flood the log.
                if n.is_power_of_two() {
                    tracing::warn!(
                        rule_id = &*job.rule_id,
                        url = job.url,
                        dropped_total = n,
                        "webhook dropped: queue full"
                    );
                }
                false
            }
        }
    }

    /// Jobs dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// The HTTP client all webhooks share.
fn build_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("tern-rules/", env!("CARGO_PKG_VERSION")))
        .build()
}

async fn run(mut rx: mpsc::Receiver<WebhookJob>, cfg: DispatcherConfig) {
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let mut tasks = JoinSet::new();
    let mut client: Option<reqwest::Client> = None;
    while let Some(job) = rx.recv().await {
        let client = match &client {
            Some(c) => c.clone(),
            None => match build_client() {
                Ok(c) => client.insert(c).clone(),
                Err(e) => {
                    // Tried again with the next job; this one counts as failed.
                    job.metrics.action_failed();
                    tracing::error!(rule_id = &*job.rule_id, url = job.url, error = %e, "cannot build the webhook HTTP client");
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let cfg = cfg.clone();
        tasks.spawn(async move {
            deliver(&client, job, &cfg).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

fn backoff(cfg: &DispatcherConfig, attempt: u32) -> Duration {
    cfg.backoff_base
        .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(cfg.backoff_max)
}

async fn deliver(client: &reqwest::Client, job: WebhookJob, cfg: &DispatcherConfig) {
    let method = match job.method {
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
    };
    let has_content_type = job
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    let mut last_error = String::new();
    let mut attempts = 0u32;
    for attempt in 0..=job.max_retries {
        attempts = attempt + 1;
        let mut req = client
            .request(method.clone(), &job.url)
            .timeout(job.timeout)
            .body(job.body.clone());
        if !has_content_type {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in &job.headers {
            req = req.header(k, v);
        }
        let retry = match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                job.metrics.action_succeeded();
                tracing::debug!(
                    rule_id = &*job.rule_id,
                    url = job.url,
                    status = resp.status().as_u16(),
                    attempts,
                    "webhook delivered"
                );
                return;
            }
            Ok(resp) => {
                let status = resp.status();
                last_error = format!("HTTP status {status}");
                status.is_server_error() || status.as_u16() == 429
            }
            Err(e) => {
                last_error = if e.is_timeout() {
                    format!("timed out after {} ms", job.timeout.as_millis())
                } else {
                    e.to_string()
                };
                !e.is_builder()
            }
        };
        if !retry {
            break;
        }
        if attempt < job.max_retries {
            tracing::debug!(
                rule_id = &*job.rule_id,
                url = job.url,
                attempt = attempts,
                error = last_error,
                "webhook attempt failed; retrying"
            );
            tokio::time::sleep(backoff(cfg, attempt)).await;
        }
    }
    job.metrics.action_failed();
    tracing::warn!(
        rule_id = &*job.rule_id,
        url = job.url,
        attempts,
        error = last_error,
        "webhook failed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = DispatcherConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            ..DispatcherConfig::default()
        };
        assert_eq!(backoff(&cfg, 0), Duration::from_millis(100));
        assert_eq!(backoff(&cfg, 1), Duration::from_millis(200));
        assert_eq!(backoff(&cfg, 2), Duration::from_millis(350));
        assert_eq!(backoff(&cfg, 40), Duration::from_millis(350));
    }
}
