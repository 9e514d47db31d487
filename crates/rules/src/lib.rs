//! `tern-rules`: SQL-like rules on MQTT topics and payloads, with actions.

#![forbid(unsafe_code)]
