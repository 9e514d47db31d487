//! `tern-client`: an async MQTT 3.1.1 and 5.0 client on tokio.

#![forbid(unsafe_code)]
