//! The rules engine's cost on the publish path: [`RulesRuntime`]'s hook called for a message no
//! rule matches, with 1,000 rules and with none, next to the bare trie walk of `tern-rules`.
//! Figures go in `docs/benchmarks.md` under "Rules engine".

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tern_broker::Message;
use tern_broker::rules::RulesRuntime;
use tern_codec::QoS;
use tern_rules::{ActionConfig, RepublishConfig, RuleConfig};

/// 1,000 rules on topics the fan-in benchmark (`bench/fanin/N`) never uses.
fn rules(n: usize) -> Vec<RuleConfig> {
    (0..n)
        .map(|i| {
            let filter = match i % 4 {
                0 => format!("plant/{i}/temp"),
                1 => format!("plant/+/line{i}"),
                2 => format!("factory/{i}/#"),
                _ => format!("+/building{i}/+/state"),
            };
            RuleConfig {
                id: format!("r{i}"),
                sql: format!("SELECT payload.temp AS t FROM \"{filter}\" WHERE payload.temp > 30"),
                actions: vec![ActionConfig::Republish(RepublishConfig {
                    topic: format!("alerts/{i}"),
                    payload: Some("${t}".into()),
                    qos: 0,
                    retain: false,
                    user_properties: Default::default(),
                })],
                enabled: true,
                description: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let message = Arc::new(Message::new(
        "bench/fanin/3",
        vec![0u8; 64],
        QoS::AtMostOnce,
        false,
    ));
    for n in [0, 1000] {
        let runtime = RulesRuntime::start(&rules(n)).unwrap();
        let hook = runtime.hook();
        c.bench_function(&format!("hook_{n}_rules_none_match"), |b| {
            b.iter(|| hook.on_publish(black_box(&message)))
        });
        let engine = runtime.engine().unwrap();
        c.bench_function(&format!("matches_topic_{n}_rules"), |b| {
            b.iter(|| engine.matches_topic(black_box("bench/fanin/3")))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
