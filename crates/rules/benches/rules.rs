//! Rules engine benchmarks: one typical rule (one JSON field, one comparison) on a matching
//! message, and a message meeting 1,000 rules none of which match its topic.
//!
//! Run: `cargo bench -p tern-rules --bench rules`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tern_rules::{MessageContext, RuleConfig, RuleSet};

fn rule(id: String, sql: String) -> RuleConfig {
    RuleConfig {
        id,
        sql,
        actions: vec![],
        enabled: true,
        description: None,
    }
}

fn typical_rule(c: &mut Criterion) {
    let set = RuleSet::from_config(&[rule(
        "hot".into(),
        "SELECT payload.temp AS t FROM \"sensors/+/temp\" WHERE payload.temp > 30".into(),
    )])
    .unwrap_or_default();
    let payload = Bytes::from_static(br#"{"temp": 31.5, "hum": 40, "room": "kitchen"}"#);
    let mut g = c.benchmark_group("rules");
    g.bench_function("typical_rule_pass", |b| {
        b.iter(|| {
            let m = MessageContext {
                topic: "sensors/k1/temp",
                payload: payload.clone(),
                clientid: "dev-1",
                ..MessageContext::default()
            };
            black_box(set.evaluate(black_box(&m)))
        });
    });
    g.bench_function("json_parse_only", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&payload)).ok()));
    });
    let cold = Bytes::from_static(br#"{"temp": 21.5, "hum": 40, "room": "kitchen"}"#);
    g.bench_function("typical_rule_filtered", |b| {
        b.iter(|| {
            let m = MessageContext {
                topic: "sensors/k1/temp",
                payload: cold.clone(),
                clientid: "dev-1",
                ..MessageContext::default()
            };
            black_box(set.evaluate(black_box(&m)))
        });
    });
    g.finish();
}

fn thousand_non_matching(c: &mut Criterion) {
    let cfgs: Vec<RuleConfig> = (0..1000)
        .map(|i| {
            let filter = match i % 4 {
                0 => format!("plant/{i}/temp"),
                1 => format!("plant/+/line{i}"),
                2 => format!("factory/{i}/#"),
                _ => format!("+/building{i}/+/state"),
            };
            rule(
                format!("r{i}"),
                format!("SELECT * FROM \"{filter}\" WHERE payload.v > {i}"),
            )
        })
        .collect();
    let set = RuleSet::from_config(&cfgs).unwrap_or_default();
    let payload = Bytes::from_static(br#"{"v": 1}"#);
    let mut g = c.benchmark_group("rules");
    g.bench_function("1000_rules_none_match", |b| {
        b.iter(|| {
            let m = MessageContext {
                topic: "sensors/k1/temp",
                payload: payload.clone(),
                clientid: "dev-1",
                ..MessageContext::default()
            };
            black_box(set.evaluate(black_box(&m)))
        });
    });
    g.bench_function("no_rules", |b| {
        let empty = RuleSet::default();
        b.iter(|| {
            let m = MessageContext {
                topic: "sensors/k1/temp",
                payload: payload.clone(),
                clientid: "dev-1",
                ..MessageContext::default()
            };
            black_box(empty.evaluate(black_box(&m)))
        });
    });
    g.finish();
}

criterion_group!(benches, typical_rule, thousand_non_matching);
criterion_main!(benches);
