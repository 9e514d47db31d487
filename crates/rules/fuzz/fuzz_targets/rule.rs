//! Fuzz target for the rule language: arbitrary bytes split into rule text, a template and a
//! payload. Compiling must never panic; whatever compiles must evaluate without panicking.
//!
//! Run: `cd crates/rules/fuzz && cargo +nightly fuzz run rule`

#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_rules::{ActionConfig, LogConfig, MessageContext, RepublishConfig, RuleConfig, RuleSet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let sql = parts.next().unwrap_or_default().to_owned();
    let template = parts.next().unwrap_or("${payload}").to_owned();
    let payload = parts
        .next()
        .unwrap_or("{\"a\":[1,{\"b\":\"c\"}]}")
        .to_owned();
    let cfg = RuleConfig {
        id: "fuzz".into(),
        sql,
        actions: vec![
            ActionConfig::Republish(RepublishConfig {
                topic: format!("out/{template}"),
                payload: Some(template.clone()),
                qos: 0,
                retain: false,
                user_properties: Default::default(),
            }),
            ActionConfig::Log(LogConfig {
                level: "trace".into(),
                message: Some(template),
            }),
        ],
        enabled: true,
        description: None,
    };
    if let Ok(set) = RuleSet::from_config(&[cfg]) {
        for topic in ["a", "a/b/c", "$SYS/x", "t/#"] {
            let mut m = MessageContext::new(topic, payload.clone().into_bytes());
            m.user_properties = vec![("a", "b")];
            let _ = set.evaluate(&m);
        }
    }
});
