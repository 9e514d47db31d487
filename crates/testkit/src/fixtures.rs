//! Configuration text that tests of several crates run against.

/// The kitchen-light gateway of the rules engine's documentation, as `tern.toml` text: "No
/// presence" as plain text, or `{"present": false}` as JSON, on `home/presence/kitchen` makes
/// the broker republish `turn_off` to `home/light/kitchen/set`.
pub const KITCHEN_RULES: &str = r#"
[[rules]]
id = "kitchen-light-off"
sql = "SELECT * FROM \"home/presence/kitchen\" WHERE payload = 'No presence'"
actions = [ { type = "republish", topic = "home/light/kitchen/set", payload = "turn_off" } ]

[[rules]]
id = "kitchen-light-off-json"
sql = "SELECT * FROM \"home/presence/kitchen\" WHERE payload.present = false"
actions = [ { type = "republish", topic = "home/light/kitchen/set", payload = "turn_off" } ]
"#;
