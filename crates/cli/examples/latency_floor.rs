//! The machine's floor under `tern bench latency`: the same path without a broker.
//!
//! A relay that does nothing but echo (one tokio task on a current-thread runtime, as a broker
//! pinned to one core runs) and a client that sends a stamped 64-byte record at a fixed rate over
//! one TCP connection (TCP_NODELAY on both ends) and reads it back on another task, on a tokio
//! multi-thread runtime like `tern bench`. Each record crosses the same wake-ups as a message
//! through a broker (the relay woken by the sender's write, the reader woken by the relay's
//! write), so its latency percentiles are what scheduling on this machine costs before any broker
//! work. Pin the two processes as `scripts/bench-compare.sh --pin` pins a broker and the load:
//!
//! ```text
//! cargo build --release -p tern-cli --example latency_floor
//! taskset -c 0 target/release/examples/latency_floor relay 18830 &
//! taskset -c 1 target/release/examples/latency_floor client 18830 1000 30
//! ```
//!
//! `relay-spin` instead of `relay` polls without ever sleeping, to tell the cost of waking the
//! relay's CPU from the rest.

#![allow(clippy::expect_used)]

use anyhow::{Context, bail};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Bytes per record: a 64-byte payload, as in `scripts/bench-compare.sh`.
const RECORD: usize = 64;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, name: &str| -> anyhow::Result<u64> {
        args.get(i)
            .with_context(|| format!("missing {name}"))?
            .parse()
            .with_context(|| format!("bad {name}"))
    };
    match args.first().map(String::as_str) {
        Some("relay") => {
            let port = u16::try_from(arg(1, "port")?)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(relay(port))
        }
        Some("relay-spin") => relay_spin(u16::try_from(arg(1, "port")?)?),
        Some("client") => {
            let port = u16::try_from(arg(1, "port")?)?;
            let (rate, secs) = (arg(2, "rate")?, arg(3, "seconds")?);
            let json = args.get(4).is_some_and(|a| a == "--json");
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(client(port, rate, secs, json))
        }
        _ => {
            bail!("usage: latency_floor relay|relay-spin PORT | client PORT RATE SECONDS [--json]")
        }
    }
}

/// Echoes every byte of every connection back, as soon as it arrives, until killed.
async fn relay(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                eprintln!("latency_floor relay: {e}");
            }
        });
    }
}

/// Echoes one connection until its end.
async fn echo(mut stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Like [`relay`], but never sleeps: a non-blocking socket polled in a loop, so the relay's CPU
/// never idles and the kernel never has to wake it (what busy polling would buy a broker).
fn relay_spin(port: u16) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    loop {
        let (stream, _) = listener.accept()?;
        if let Err(e) = echo_spinning(stream) {
            eprintln!("latency_floor relay-spin: {e}");
        }
    }
}

/// Echoes one connection until its end without ever blocking.
fn echo_spinning(mut stream: std::net::TcpStream) -> anyhow::Result<()> {
    use std::io::{ErrorKind, Read, Write};
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let mut out = &buf[..n];
                while !out.is_empty() {
                    match stream.write(out) {
                        Ok(w) => out = &out[w..],
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends `rate` records a second for `secs` seconds and prints the round trip's percentiles, as a
/// line of text or, with `json`, shaped like the latency part of a `tern bench --json` report.
async fn client(port: u16, rate: u64, secs: u64, json: bool) -> anyhow::Result<()> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let base = Instant::now();
    let total = rate.saturating_mul(secs);
    let reader = tokio::spawn(async move {
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let mut rec = [0u8; RECORD];
        for _ in 0..total {
            rd.read_exact(&mut rec).await?;
            let sent = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
            let now = u64::try_from(base.elapsed().as_nanos())?;
            hist.record(now.saturating_sub(sent).max(1))?;
        }
        anyhow::Ok(hist)
    });
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut rec = [0xA5u8; RECORD];
    for i in 0..total {
        tokio::time::sleep_until(base + period.mul_f64(i as f64)).await;
        let sent = u64::try_from(base.elapsed().as_nanos())?;
        rec[..8].copy_from_slice(&sent.to_le_bytes());
        wr.write_all(&rec).await?;
    }
    let hist = reader.await??;
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    if json {
        let report = serde_json::json!({
            "scenario": "latency-floor",
            "messages": {
                "expected": total,
                "lost": total.saturating_sub(hist.len()),
                "latency_us": {
                    "count": hist.len(),
                    "p50": us(0.5),
                    "p99": us(0.99),
                    "p999": us(0.999),
                    "max": hist.max() as f64 / 1000.0,
                },
            },
            "errors": [],
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "records {} p50 {:.0} us p99 {:.0} us p99.9 {:.0} us max {:.0} us",
        hist.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
    Ok(())
}
