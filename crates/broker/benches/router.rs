//! Topic matching in [`TrieRouter`] with 100,000 subscriptions: what one PUBLISH pays to find its
//! subscribers. The mix is a fleet of devices: mostly exact topics, then `+` and `#` filters
//! and a few `$share` groups. Figures go in `docs/benchmarks.md` under "Router and mailbox".
//!
//! The router is built once (about 100 ms), so `cargo test --benches` (one iteration of each
//! benchmark) stays quick.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tern_broker::router::{RouteEntry, Router, TrieRouter};
use tern_codec::{QoS, SubscriptionOptions};

/// Sites of the fleet; each has `DEVICES` devices.
const SITES: usize = 100;
const DEVICES: usize = 700;

fn entry(qos: QoS) -> RouteEntry {
    RouteEntry {
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
        subscription_id: None,
    }
}

/// 100,000 subscriptions by 100,000 clients:
/// - 70,000 exact: each device's command topic `site/S/dev/D/cmd`;
/// - 20,000 `+`: per site, 200 dashboards on `site/S/dev/+/telemetry`, `site/S/+/D/alarm`...;
/// - 8,000 `#`: per site, 80 loggers on `site/S/dev/D/#` (a few devices each) and `site/S/#`;
/// - 2,000 `$share`: 20 groups per site of workers on `$share/wK/site/S/dev/+/telemetry`.
fn build() -> TrieRouter {
    let r = TrieRouter::new();
    let mut n = 0usize;
    let mut sub = |filter: String, qos: QoS| {
        let client: Arc<str> = Arc::from(format!("c{n}"));
        r.subscribe(&client, &filter, entry(qos));
        n += 1;
    };
    for s in 0..SITES {
        for d in 0..DEVICES {
            sub(format!("site/{s}/dev/{d}/cmd"), QoS::AtLeastOnce);
        }
        for k in 0..200 {
            let filter = match k % 4 {
                0 => format!("site/{s}/dev/+/telemetry"),
                1 => format!("site/{s}/+/{k}/alarm"),
                2 => format!("+/{s}/dev/{k}/status"),
                _ => format!("site/{s}/dev/{k}/+"),
            };
            sub(filter, QoS::AtMostOnce);
        }
        for k in 0..80 {
            let filter = if k == 0 {
                format!("site/{s}/#")
            } else {
                format!("site/{s}/dev/{k}/#")
            };
            sub(filter, QoS::AtMostOnce);
        }
        for k in 0..20 {
            sub(
                format!("$share/w{k}/site/{s}/dev/+/telemetry"),
                QoS::AtLeastOnce,
            );
        }
    }
    assert_eq!(n, 100_000);
    r
}

fn bench(c: &mut Criterion) {
    let r = build();

    // An exact subscriber and nothing else.
    let cmd = r.route("site/42/dev/612/cmd", None);
    assert_eq!((cmd.targets.len(), cmd.shared.len()), (2, 0)); // + site/42/#
    // The busy topic: 50 dashboards on `site/42/dev/+/telemetry`, `site/42/#`, the device's
    // `site/42/dev/7/+` and `site/42/dev/7/#`, and the site's 20 shared groups.
    let telemetry = r.route("site/42/dev/7/telemetry", None);
    assert_eq!(telemetry.targets.len(), 53);
    assert_eq!(telemetry.shared.len(), 20);
    // A few: `+/42/dev/6/status`, `site/42/dev/6/#`, `site/42/#`.
    let status = r.route("site/42/dev/6/status", None);
    assert_eq!((status.targets.len(), status.shared.len()), (3, 0));
    // Nothing: no exact subscriber, and the `+` branch of the trie dies out at the last level.
    let none = r.route("plant/42/dev/7/telemetry", None);
    assert!(none.targets.is_empty() && none.shared.is_empty());
    // Nothing, after walking the trie down to the device level.
    let deep_miss = r.route("site/42/gateway/9/uptime", None);
    assert_eq!(deep_miss.targets.len(), 1); // site/42/#

    let mut g = c.benchmark_group("router_100k");
    g.bench_function("exact_topic_2_targets", |b| {
        b.iter(|| r.route(black_box("site/42/dev/612/cmd"), None))
    });
    g.bench_function("wildcards_3_targets", |b| {
        b.iter(|| r.route(black_box("site/42/dev/6/status"), None))
    });
    g.bench_function("telemetry_53_targets_20_shared_groups", |b| {
        b.iter(|| r.route(black_box("site/42/dev/7/telemetry"), None))
    });
    g.bench_function("no_match", |b| {
        b.iter(|| r.route(black_box("plant/42/dev/7/telemetry"), None))
    });
    g.bench_function("site_hash_only_after_trie_walk", |b| {
        b.iter(|| r.route(black_box("site/42/gateway/9/uptime"), None))
    });
    let client: Arc<str> = Arc::from("bench-subscriber");
    g.bench_function("subscribe_unsubscribe_wildcard", |b| {
        b.iter(|| {
            r.subscribe(
                &client,
                black_box("site/42/dev/+/fw"),
                entry(QoS::AtMostOnce),
            );
            r.unsubscribe(&client, black_box("site/42/dev/+/fw"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
