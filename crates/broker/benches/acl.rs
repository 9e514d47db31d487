//! ACL checks against a 1,000-line ACL file: the per-message cost the broker pays on publish and
//! on delivery, with the [`SessionAcl`] it keeps per session, and the one-off cost of building
//! that at CONNECT. Figures go in `docs/benchmarks.md` under "ACL checks".

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tern_broker::auth::{Access, AclFile, Authorizer, ClientIdentity};

/// 100 users of 9 lines each (user line included), a few anonymous lines and patterns: 1,000.
fn many_users() -> String {
    let mut text = String::from("topic read public/#\ntopic write public/anon\n");
    for u in 0..100 {
        text.push_str(&format!("user user{u}\n"));
        text.push_str(&format!("topic readwrite site/{u}/+/telemetry\n"));
        text.push_str(&format!("topic read site/{u}/config/#\n"));
        text.push_str(&format!("topic deny site/{u}/config/secret\n"));
        for k in 0..5 {
            text.push_str(&format!("topic write site/{u}/cmd/{k}\n"));
        }
    }
    for p in 0..98 {
        text.push_str(&format!("pattern readwrite tenants/{p}/%u/%c/#\n"));
    }
    text
}

/// One user owning 999 lines: the worst case for a linear scan.
fn one_big_user() -> String {
    let mut text = String::from("user big\n");
    for i in 0..999 {
        text.push_str(&format!("topic readwrite area/{i}/+/data\n"));
    }
    text
}

fn bench(c: &mut Criterion) {
    let many = many_users();
    assert_eq!(many.lines().count(), 1000);
    let many = AclFile::parse("bench-acl", &many).unwrap();
    let big = one_big_user();
    assert_eq!(big.lines().count(), 1000);
    let big = AclFile::parse("bench-acl", &big).unwrap();

    let user = ClientIdentity {
        client_id: "dev-42".into(),
        username: Some("user57".into()),
    };
    let session = many.session(&user);
    assert!(session.check(Access::Write, "site/57/dev-42/telemetry"));
    assert!(session.check(Access::Write, "tenants/97/user57/dev-42/x"));
    assert!(!session.check(Access::Read, "site/57/config/secret"));

    let mut g = c.benchmark_group("acl");
    g.bench_function("session_write_allowed_topic_line", |b| {
        b.iter(|| session.check(Access::Write, black_box("site/57/dev-42/telemetry")))
    });
    g.bench_function("session_read_denied", |b| {
        b.iter(|| session.check(Access::Read, black_box("site/57/config/secret")))
    });
    g.bench_function("session_write_allowed_by_last_pattern", |b| {
        b.iter(|| session.check(Access::Write, black_box("tenants/97/user57/dev-42/x")))
    });
    g.bench_function("session_write_refused_nothing_matches", |b| {
        b.iter(|| session.check(Access::Write, black_box("elsewhere/a/b/c")))
    });
    g.bench_function("session_subscribe_covered", |b| {
        b.iter(|| session.check(Access::Subscribe, black_box("site/57/config/+")))
    });

    let cache = tern_broker::auth::AclCache::new(session.clone(), 1024);
    g.bench_function("cached_session_write_hit", |b| {
        b.iter(|| cache.check(Access::Write, black_box("site/57/dev-42/telemetry")))
    });
    g.bench_function("authorizer_trait_remembered_session", |b| {
        b.iter(|| many.authorize(&user, Access::Write, black_box("site/57/dev-42/telemetry")))
    });

    let big_user = ClientIdentity {
        client_id: "c".into(),
        username: Some("big".into()),
    };
    let big_session = big.session(&big_user);
    assert!(big_session.check(Access::Read, "area/998/x/data"));
    g.bench_function("session_999_lines_one_user_last_line", |b| {
        b.iter(|| big_session.check(Access::Read, black_box("area/998/x/data")))
    });

    g.bench_function("session_build_at_connect_98_patterns", |b| {
        b.iter(|| many.session(black_box(&user)))
    });
    // Reference points on the same machine and load: what a per-session memo of decisions
    // (a std HashMap keyed by topic) would cost per lookup, and splitting the topic into levels.
    let memo: std::collections::HashMap<String, bool> = (0..64)
        .map(|i| (format!("site/57/dev-{i}/telemetry"), true))
        .collect();
    g.bench_function("reference_std_hashmap_lookup_of_topic", |b| {
        b.iter(|| memo.get(black_box("site/57/dev-42/telemetry")).copied())
    });
    g.bench_function("reference_split_topic_into_vec", |b| {
        b.iter(|| {
            black_box("site/57/dev-42/telemetry")
                .split('/')
                .collect::<Vec<_>>()
        })
    });
    g.finish();

    c.bench_function("acl/parse_1000_lines", |b| {
        let text = many_users();
        b.iter(|| AclFile::parse("bench-acl", black_box(&text)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
