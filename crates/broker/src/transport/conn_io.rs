//! One connection's byte stream with its read and write buffers, driven from the connection's
//! own task: no writer task, no channel, no split stream.
//!
//! [`ConnIo::poll_io`] writes whatever is buffered (every packet encoded since the last write goes
//! out in one `write`), flushes (TLS and WebSocket buffer what they are given), and reads. Reads
//! land in a scratch buffer on the stack of the poll and are copied into the read buffer only
//! when bytes arrive, so an idle connection holds no read buffer at all; both buffers are let go
//! of by [`ConnIo::release_idle`] once empty. Not here: MQTT framing (the codec) and what the
//! bytes mean (the protocol state machine).

use bytes::{Buf, BytesMut};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Largest read. Also how much one publisher's turn may route: larger reads starve a
/// subscriber's task on a busy core (with 64 KiB, fan-in QoS 0 delivered a tenth of what it
/// does with 4 KiB).
pub(crate) const READ_MAX: usize = 4096;

/// What one [`ConnIo::poll_io`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IoEvent {
    /// Bytes were appended to the read buffer.
    Read,
    /// Buffered bytes went out (all, or as many as the socket took).
    Wrote,
    /// The peer closed the stream, or it failed.
    Closed,
}

/// A connection's stream and buffers.
pub(crate) struct ConnIo<S> {
    stream: S,
    /// Bytes read and not decoded yet (at most a partial packet between turns).
    pub(crate) rbuf: BytesMut,
    /// Encoded packets not written yet.
    pub(crate) wbuf: BytesMut,
    /// Bytes were written since the last flush.
    unflushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnIo<S> {
    /// Wraps a stream, with both buffers empty (unallocated).
    pub(crate) fn new(stream: S) -> Self {
        ConnIo {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            unflushed: false,
        }
    }

    /// Writes and flushes what is buffered, then reads if `read` (the caller stops reading for
    /// back-pressure or a rate limit). Ready as soon as either side made progress. Cancel safe:
    /// bytes are taken from and added to the buffers only when an operation completes.
    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<IoEvent> {
        let mut wrote = false;
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(IoEvent::Closed),
                Poll::Ready(Ok(n)) => {
                    self.wbuf.advance(n);
                    self.unflushed = true;
                    wrote = true;
                }
                Poll::Pending => break,
            }
        }
        if self.wbuf.is_empty() && self.unflushed {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return Poll::Ready(IoEvent::Closed),
                Poll::Pending => {}
            }
        }
        if wrote {
            return Poll::Ready(IoEvent::Wrote);
        }
        if !read {
            return Poll::Pending;
        }
        // On this poll's stack, not in the connection's future: idle, a connection holds no
        // read buffer; busy, the copy costs far less than the read system call it follows.
        let mut scratch = [MaybeUninit::<u8>::uninit(); READ_MAX];
        let mut buf = ReadBuf::uninit(&mut scratch);
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(IoEvent::Closed),
            Poll::Ready(Ok(())) => {
                self.rbuf.extend_from_slice(buf.filled());
                Poll::Ready(IoEvent::Read)
            }
            Poll::Ready(Err(_)) => Poll::Ready(IoEvent::Closed),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Bytes buffered and not written yet.
    pub(crate) fn unwritten(&self) -> usize {
        self.wbuf.len()
    }

    /// Lets go of whichever buffer is empty, so an idle connection holds none. Even with no
    /// capacity left, an empty buffer may still share the allocation of the packets decoded
    /// from it (the CONNECT's, and the 40-byte header that sharing adds), so it is replaced
    /// whenever it is empty.
    pub(crate) fn release_idle(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
        }
    }

    /// Writes what is left, flushes and shuts the stream down (TLS: close_notify; WebSocket:
    /// a Close frame). Errors are the peer's problem now: the connection is over either way.
    pub(crate) async fn finish(&mut self) {
        if self.stream.write_all_buf(&mut self.wbuf).await.is_ok() {
            let _ = self.stream.flush().await;
        }
        let _ = self.stream.shutdown().await;
    }
}

impl<S> std::fmt::Debug for ConnIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnIo")
            .field("read_buffered", &self.rbuf.len())
            .field("write_buffered", &self.wbuf.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn writes_buffered_packets_and_reads_without_holding_buffers() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut io = ConnIo::new(a);
        io.wbuf.extend_from_slice(b"hello");
        io.wbuf.extend_from_slice(b" world");
        assert_eq!(poll_fn(|cx| io.poll_io(cx, true)).await, IoEvent::Wrote);
        let mut got = [0u8; 11];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        io.release_idle();
        assert_eq!(io.wbuf.capacity(), 0);
        assert_eq!(io.rbuf.capacity(), 0);

        b.write_all(b"ping").await.unwrap();
        assert_eq!(poll_fn(|cx| io.poll_io(cx, true)).await, IoEvent::Read);
        assert_eq!(&io.rbuf[..], b"ping");
        io.rbuf.clear();
        io.release_idle();
        assert_eq!(io.rbuf.capacity(), 0);

        drop(b);
        assert_eq!(poll_fn(|cx| io.poll_io(cx, true)).await, IoEvent::Closed);
    }

    #[tokio::test]
    async fn an_idle_connection_keeps_no_share_of_decoded_packets_buffer() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = ConnIo::new(a);
        b.write_all(b"connect!").await.unwrap();
        assert_eq!(poll_fn(|cx| io.poll_io(cx, true)).await, IoEvent::Read);
        // The codec takes whole packets off the front, as views of the same allocation: what
        // is left is empty, with no capacity, and still shares it.
        let packet = io.rbuf.split_to(8).freeze();
        assert!(io.rbuf.is_empty());
        assert_eq!(io.rbuf.capacity(), 0);
        assert!(!packet.is_unique());
        io.release_idle();
        // The read buffer no longer holds the allocation a packet (its client id...) still uses.
        assert!(packet.is_unique());
        assert_eq!(&packet[..], b"connect!");
    }

    #[tokio::test]
    async fn a_full_peer_holds_the_rest_until_it_reads() {
        let (a, mut b) = tokio::io::duplex(8);
        let mut io = ConnIo::new(a);
        io.wbuf.extend_from_slice(&[7u8; 20]);
        // The pipe takes 8 bytes; the rest stays buffered.
        assert_eq!(poll_fn(|cx| io.poll_io(cx, false)).await, IoEvent::Wrote);
        assert_eq!(io.unwritten(), 12);
        let mut got = vec![0u8; 20];
        let reader = tokio::spawn(async move {
            b.read_exact(&mut got).await.unwrap();
            got
        });
        io.finish().await;
        assert_eq!(reader.await.unwrap(), vec![7u8; 20]);
    }
}
