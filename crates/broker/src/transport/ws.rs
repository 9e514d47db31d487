//! MQTT over WebSocket: the opening handshake (path and `mqtt` subprotocol checked), and an
//! adapter that turns the WebSocket message stream back into a byte stream for the driver.
//!
//! MQTT control packets travel in binary frames; one packet may span frames and one frame may
//! carry several packets [MQTT-6.0.0-2] [MQTT-6.0.0-3], so the adapter only concatenates
//! payloads and leaves framing to the MQTT decoder. A text frame closes the connection
//! [MQTT-6.0.0-1]. Not here: TLS (`wss://` is TLS in front of this, as for TCP).

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Subprotocols accepted, in order of preference: `mqtt` (3.1.1 and 5.0) and the 3.1 name.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why a WebSocket handshake was refused (the HTTP status already went to the client).
#[derive(Debug, thiserror::Error)]
pub enum WsHandshakeError {
    /// The handshake failed: wrong path, no `mqtt` subprotocol, not a WebSocket request, I/O.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[from] WsError),
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_string()));
    *r.status_mut() = status;
    r
}

/// The subprotocol to answer with, from the client's `Sec-WebSocket-Protocol` headers.
fn choose_subprotocol(req: &Request) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    SUBPROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
}

/// Accepts a WebSocket connection on `path` speaking the `mqtt` subprotocol; anything else gets
/// an HTTP error (404 for another path, 400 without the subprotocol) and an `Err`.
#[allow(clippy::result_large_err)] // the error response is tungstenite's type, built once
pub async fn accept<S>(
    stream: S,
    path: &str,
    max_message: usize,
) -> Result<WsIo<S>, WsHandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = path.to_string();
    let check = move |req: &Request, mut resp: Response| {
        if req.uri().path() != path {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "no MQTT endpoint at this path",
            ));
        }
        let Some(proto) = choose_subprotocol(req) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Protocol must offer `mqtt`",
            ));
        };
        resp.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(proto));
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await?;
    Ok(WsIo::new(ws))
}

/// A WebSocket connection as a byte stream: reads are the payloads of binary messages, each
/// write goes out as one binary message.
#[derive(Debug)]
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message read.
    pending: Bytes,
    eof: bool,
}

impl<S> WsIo<S> {
    /// Wraps an established WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsIo {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

fn io_err(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(this.pending.get(..n).unwrap_or_default());
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                // Pings are answered by tungstenite itself; pongs need nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    // [MQTT-6.0.0-1]: a non-binary data frame closes the connection.
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket frame: MQTT travels in binary frames",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_err)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_err)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_err)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(protocols: &[&str]) -> Request {
        let mut b = Request::builder().uri("/mqtt");
        for p in protocols {
            b = b.header("Sec-WebSocket-Protocol", *p);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn mqtt_subprotocol_is_chosen_from_any_offer() {
        assert_eq!(choose_subprotocol(&req(&["mqtt"])), Some("mqtt"));
        assert_eq!(choose_subprotocol(&req(&["chat, MQTT"])), Some("mqtt"));
        assert_eq!(choose_subprotocol(&req(&["chat", "mqtt"])), Some("mqtt"));
        assert_eq!(choose_subprotocol(&req(&["mqttv3.1"])), Some("mqttv3.1"));
        assert_eq!(choose_subprotocol(&req(&["mqttv3.1, mqtt"])), Some("mqtt"));
        assert_eq!(choose_subprotocol(&req(&[])), None);
        assert_eq!(choose_subprotocol(&req(&["mqtt5"])), None);
    }
}
