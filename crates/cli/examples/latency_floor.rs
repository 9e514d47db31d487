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
//! `relay-spin` instead of `relay`, and `client-spin` instead of `client`, poll without ever
//! sleeping: with both, neither CPU ever idles, and what tail remains is the host taking the
//! virtual CPUs away (steal time), which no program inside the machine can avoid.

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
        Some(mode @ ("client" | "client-spin")) => {
            let port = u16::try_from(arg(1, "port")?)?;
            let (rate, secs) = (arg(2, "rate")?, arg(3, "seconds")?);
            let json = args.get(4).is_some_and(|a| a == "--json");
            let hist = if mode == "client" {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?
                    .block_on(client(port, rate, secs))?
            } else {
                client_spin(port, rate, secs)?
            };
            report(&hist, rate.saturating_mul(secs), json);
            Ok(())
        }
        _ => bail!(
            "usage: latency_floor relay|relay-spin PORT | client|client-spin PORT RATE SECONDS [--json]"
        ),
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

type Histogram = hdrhistogram::Histogram<u64>;

fn new_histogram() -> anyhow::Result<Histogram> {
    Ok(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
}

/// The stamp (ns since the client started) at the head of a record.
fn stamp_of(rec: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&rec[..8]);
    u64::from_le_bytes(b)
}

/// Sends `rate` records a second for `secs` seconds on a tokio runtime (a task that sleeps
/// until each send, another that reads), like `tern bench`; the round trips' histogram.
async fn client(port: u16, rate: u64, secs: u64) -> anyhow::Result<Histogram> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let base = Instant::now();
    let total = rate.saturating_mul(secs);
    let reader = tokio::spawn(async move {
        let mut hist = new_histogram()?;
        let mut rec = [0u8; RECORD];
        for _ in 0..total {
            rd.read_exact(&mut rec).await?;
            let now = u64::try_from(base.elapsed().as_nanos())?;
            hist.record(now.saturating_sub(stamp_of(&rec)).max(1))?;
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
    reader.await?
}

/// Like [`client`], but one thread that never sleeps: it polls the clock for each send and a
/// non-blocking socket for the echoes, so no wake-up of the client's CPU is measured either.
fn client_spin(port: u16, rate: u64, secs: u64) -> anyhow::Result<Histogram> {
    use std::io::{ErrorKind, Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let base = std::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let total = rate.saturating_mul(secs);
    let mut hist = new_histogram()?;
    let (mut sent, mut pending, mut chunk) = (0u64, Vec::new(), [0u8; 4096]);
    while hist.len() < total {
        if sent < total && base.elapsed() >= period.mul_f64(sent as f64) {
            let mut rec = [0xA5u8; RECORD];
            rec[..8].copy_from_slice(&u64::try_from(base.elapsed().as_nanos())?.to_le_bytes());
            let mut out = &rec[..];
            while !out.is_empty() {
                match stream.write(out) {
                    Ok(n) => out = &out[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) => return Err(e.into()),
                }
            }
            sent += 1;
        }
        match stream.read(&mut chunk) {
            Ok(0) => bail!("the relay closed the connection"),
            Ok(n) => {
                let now = u64::try_from(base.elapsed().as_nanos())?;
                pending.extend_from_slice(&chunk[..n]);
                let whole = pending.len() - pending.len() % RECORD;
                for rec in pending[..whole].chunks_exact(RECORD) {
                    hist.record(now.saturating_sub(stamp_of(rec)).max(1))?;
                }
                pending.drain(..whole);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(hist)
}

/// Prints the percentiles as a line of text or, with `json`, shaped like the latency part of a
/// `tern bench --json` report.
fn report(hist: &Histogram, expected: u64, json: bool) {
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    if json {
        let report = serde_json::json!({
            "scenario": "latency-floor",
            "messages": {
                "expected": expected,
                "lost": expected.saturating_sub(hist.len()),
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
    } else {
        println!(
            "records {} p50 {:.0} us p99 {:.0} us p99.9 {:.0} us max {:.0} us",
            hist.len(),
            us(0.5),
            us(0.99),
            us(0.999),
            hist.max() as f64 / 1000.0
        );
    }
}
