//! Does handing a PUBLISH's payload to the kernel by reference (`writev` of header + payload)
//! cost less than copying it into the write buffer (what the broker does)? Measures the
//! writer's CPU time per message over loopback TCP, for payloads of 64 B to 16 KiB, a reader
//! thread draining the other end.
//!
//! - `copy`: `tern_codec::encode` of each PUBLISH into one buffer, written in 64 KiB batches;
//! - `writev`: the same batches as two slices per message (header, shared payload), written
//!   with `write_vectored` (encoding cost not counted: the header bytes are made once).
//!
//! Run: `cargo run --release -p tern-broker --example vectored_write [messages]`
//! (Linux: the thread CPU time is read from `/proc/thread-self/schedstat`.)

use bytes::{Bytes, BytesMut};
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use tern_codec::{ByteStr, Packet, ProtocolVersion, Publish, QoS, encode};

const TOPIC: &str = "sensors/building-1/floor-2/temperature";
/// Bytes per write, as a busy connection's buffer holds between two turns.
const BATCH_BYTES: usize = 64 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let messages: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    println!(
        "{:>7} {:>12} {:>12} {:>7}",
        "payload", "copy ns/msg", "writev ns/msg", "ratio"
    );
    for size in [64usize, 256, 1024, 4096, 16_384] {
        let publish = Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: ByteStr::from_static(TOPIC),
            packet_id: 42,
            payload: Bytes::from(vec![0xA5u8; size]),
            ..Default::default()
        });
        let (mut copy, mut vectored) = (f64::MAX, f64::MAX);
        // Alternating, best of three: load on the machine can only slow a run down.
        for _ in 0..3 {
            copy = copy.min(run(&publish, size, messages, false)?);
            vectored = vectored.min(run(&publish, size, messages, true)?);
        }
        println!(
            "{size:>7} {copy:>12.1} {vectored:>12.1} {:>6.2}x",
            copy / vectored
        );
    }
    Ok(())
}

/// Writer CPU nanoseconds per message.
fn run(publish: &Packet, size: usize, messages: usize, vectored: bool) -> io::Result<f64> {
    let mut one = BytesMut::new();
    encode(publish, ProtocolVersion::V311, &mut one).map_err(io::Error::other)?;
    let total = one.len() * messages;
    let head = one.split_to(one.len() - size).freeze();
    let payload = one.freeze();

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < total {
            match s.read(&mut buf)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let per_batch = (BATCH_BYTES / (head.len() + size)).max(1);
    let mut wbuf = BytesMut::with_capacity(2 * BATCH_BYTES);
    let start = thread_cpu_ns()?;
    let mut sent = 0;
    while sent < messages {
        let k = per_batch.min(messages - sent);
        if vectored {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * k);
            for _ in 0..k {
                slices.push(IoSlice::new(&head));
                slices.push(IoSlice::new(&payload));
            }
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let n = s.write_vectored(rest)?;
                IoSlice::advance_slices(&mut rest, n);
            }
        } else {
            wbuf.clear();
            for _ in 0..k {
                encode(publish, ProtocolVersion::V311, &mut wbuf).map_err(io::Error::other)?;
            }
            s.write_all(&wbuf)?;
        }
        sent += k;
    }
    let cpu = thread_cpu_ns()? - start;
    drop(s);
    reader
        .join()
        .map_err(|_| io::Error::other("reader panicked"))??;
    Ok(cpu as f64 / messages as f64)
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    stat.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("unexpected /proc/thread-self/schedstat"))
}
