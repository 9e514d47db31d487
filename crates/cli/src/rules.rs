//! `tern rules`: work with rules without a broker. `tern rules test` evaluates one rule against
//! one message and prints what it selects and the actions it would take; nothing is published or
//! sent. `tern rules check -c tern.toml` checks every rule of a configuration file.
//!
//! Exit status of `test`: 0 when the rule passes, 1 when the topic does not match or WHERE is not
//! true, 2 for an error (a located parse error, an unreadable configuration, an unknown rule id).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tern_rules::{
    DEFAULT_MAX_HOPS, MessageContext, Rule, RuleConfig, RuleError, Verdict, rules_from_toml,
};

/// Arguments of `tern rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Evaluate a rule against one message and print the selected fields and the actions it
    /// would take (or the located parse error).
    Test(TestArgs),
    /// Check every [[rules]] table of a configuration file, as the broker does at start-up.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Configuration file whose [[rules]] tables are checked (other keys are ignored).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// The rule text: SELECT … FROM "filter" [WHERE …].
    #[arg(long, conflicts_with = "rule", required_unless_present = "rule")]
    sql: Option<String>,
    /// Id of a rule in the configuration file (with -c).
    #[arg(long, requires = "config")]
    rule: Option<String>,
    /// Configuration file whose [[rules]] tables are read (other keys are ignored).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Topic of the test message.
    #[arg(long)]
    topic: String,
    /// Payload of the test message.
    #[arg(long, default_value = "")]
    payload: String,
    /// Client Identifier of the publisher.
    #[arg(long, default_value = "tern-rules-test")]
    clientid: String,
    /// User Name of the publisher.
    #[arg(long)]
    username: Option<String>,
    /// QoS of the test message.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Set the RETAIN flag.
    #[arg(long)]
    retain: bool,
    /// A user property, KEY=VALUE; repeat for several.
    #[arg(long = "user-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    user_property: Vec<(String, String)>,
    /// Hop count of the test message (republishes that led to it), to try the loop guard.
    #[arg(long, default_value_t = 0)]
    hops: u8,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Runs `tern rules …`.
pub fn run(args: RulesArgs) -> ExitCode {
    match args.command {
        RulesCommand::Test(t) => test(t),
        RulesCommand::Check(c) => check(c),
    }
}

fn check(c: CheckArgs) -> ExitCode {
    let path = c.config.display();
    let text = match std::fs::read_to_string(&c.config) {
        Ok(text) => text,
        Err(e) => return fail(&format!("cannot read {path}: {e}")),
    };
    let rules = match rules_from_toml(&text) {
        Ok(rules) => rules,
        Err(e) => return fail(&format!("{path}: {e}")),
    };
    match tern_rules::RuleSet::from_config(&rules) {
        Ok(set) => {
            let enabled = set.rules().iter().filter(|r| r.enabled()).count();
            println!(
                "{path}: {} rule(s) OK ({enabled} enabled)",
                set.rules().len()
            );
            ExitCode::SUCCESS
        }
        Err(RuleError::Sql { rule, error }) => {
            let sql = rules
                .iter()
                .find(|r| r.id == rule)
                .map_or("", |r| r.sql.as_str());
            fail(&format!(
                "{path}: rule `{rule}`: sql: {}",
                error.render(sql)
            ))
        }
        Err(e) => fail(&format!("{path}: {e}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn test(t: TestArgs) -> ExitCode {
    let cfg = match (&t.sql, &t.rule, &t.config) {
        (Some(sql), _, _) => RuleConfig {
            id: "--sql".to_owned(),
            sql: sql.clone(),
            actions: Vec::new(),
            enabled: true,
            description: None,
        },
        (None, Some(id), Some(path)) => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => return fail(&format!("cannot read {}: {e}", path.display())),
            };
            let rules = match rules_from_toml(&text) {
                Ok(rules) => rules,
                Err(e) => return fail(&format!("{}: {e}", path.display())),
            };
            let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
            match rules.iter().find(|r| &r.id == id) {
                Some(r) => r.clone(),
                None => {
                    return fail(&format!(
                        "{}: no rule with id `{id}`; the file has: {}",
                        path.display(),
                        if ids.is_empty() {
                            "no [[rules]]".to_owned()
                        } else {
                            ids.join(", ")
                        }
                    ));
                }
            }
        }
        _ => return fail("give --sql, or --rule with -c FILE"),
    };
    let rule = match Rule::compile(&cfg) {
        Ok(rule) => rule,
        Err(RuleError::Sql { rule, error }) => {
            return fail(&format!("rule `{rule}`: sql: {}", error.render(&cfg.sql)));
        }
        Err(e) => return fail(&e.to_string()),
    };
    let mut msg = MessageContext::new(&t.topic, t.payload.clone().into_bytes());
    msg.clientid = &t.clientid;
    msg.username = t.username.as_deref();
    msg.qos = t.qos;
    msg.retain = t.retain;
    msg.hops = t.hops;
    msg.user_properties = t
        .user_property
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let verdict = rule.check(&msg, DEFAULT_MAX_HOPS);
    if !rule.enabled() {
        eprintln!(
            "note: rule `{}` has enabled = false; the broker does not run it",
            rule.id()
        );
    }
    println!("{:#}", verdict.to_json(rule.id()));
    match verdict {
        Verdict::Passed(_) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
