//! The byte streams MQTT runs over: TCP and TLS streams as they are, WebSocket as
//! binary messages. The connection handler sees one trait for all four listeners.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::io::poll_read_buf;

use crate::watched::Watched;

pub trait MqttIo: Send + 'static {
    /// Appends what arrives next to `buf`; `Ok(0)` at end of stream. Poll-based, so a
    /// connection waiting for bytes keeps no future for it.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>>;
    fn write_bytes(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes politely (TLS close_notify, WebSocket close frame).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Reads what arrives next into `buf`. Cancel-safe.
pub async fn read_into<I: MqttIo>(io: &mut I, buf: &mut BytesMut) -> io::Result<usize> {
    std::future::poll_fn(|cx| io.poll_read_into(cx, buf)).await
}

/// How much to reserve for the next read: 256 bytes for the first (CONNECT), 1 KiB
/// while reads are small, doubling (up to 64 KiB) after each read that filled the
/// buffer, so busy publishers still read in large chunks.
pub struct ReadSize {
    next: usize,
}

impl Default for ReadSize {
    fn default() -> Self {
        ReadSize { next: Self::FIRST }
    }
}

impl ReadSize {
    const FIRST: usize = 256;
    const MIN: usize = 1024;
    const MAX: usize = 64 * 1024;

    fn reserve(&mut self, buf: &mut BytesMut) {
        let want = self.next;
        if buf.capacity() - buf.len() < want / 2 {
            buf.reserve(want);
        }
    }

    fn record(&mut self, read: usize, room: usize) {
        self.next = if read >= room {
            (self.next * 2).clamp(Self::MIN, Self::MAX)
        } else {
            Self::MIN
        };
    }
}

/// How a byte stream reads into the connection's buffer.
pub trait FillBuf: AsyncWrite + Unpin + Send + 'static {
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        read_size: &mut ReadSize,
    ) -> Poll<io::Result<usize>>;
}

/// Plain TCP waits for readiness before reserving, so an idle connection whose
/// buffer was released holds none.
impl FillBuf for TcpStream {
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        read_size: &mut ReadSize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            read_size.reserve(buf);
            let room = buf.capacity() - buf.len();
            match self.try_read_buf(buf) {
                Ok(read) => {
                    read_size.record(read, room);
                    return Poll::Ready(Ok(read));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// TLS keeps buffers of its own; it reads into ours directly.
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> FillBuf for TlsStream<S> {
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        read_size: &mut ReadSize,
    ) -> Poll<io::Result<usize>> {
        read_size.reserve(buf);
        let room = buf.capacity() - buf.len();
        let read = ready!(poll_read_buf(Pin::new(self), cx, buf))?;
        read_size.record(read, room);
        Poll::Ready(Ok(read))
    }
}

/// MQTT straight over a byte stream: TCP or TLS.
pub struct ByteStream<S> {
    stream: S,
    read_size: ReadSize,
}

impl<S> ByteStream<S> {
    pub fn new(stream: S) -> ByteStream<S> {
        ByteStream {
            stream,
            read_size: ReadSize::default(),
        }
    }
}

impl<S: FillBuf> MqttIo for ByteStream<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_fill(cx, buf, &mut self.read_size)
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// MQTT over WebSocket: each binary message carries bytes of the MQTT stream. A
/// frame begun must be finished within `frame_timeout` (its bytes are bounded by
/// the WebSocket config's frame size).
pub struct WsStream<S> {
    ws: WebSocketStream<Watched<S>>,
    frame_timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    pub fn new(ws: WebSocketStream<Watched<S>>, frame_timeout: Duration) -> WsStream<S> {
        // The handshake's bytes are not a frame.
        ws.get_ref().frame_done();
        WsStream {
            ws,
            frame_timeout,
            deadline: None,
        }
    }

    /// Ready with an error once an unfinished frame has waited too long.
    fn poll_frame_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(waiting) = self.ws.get_ref().unfinished_for() else {
            self.deadline = None;
            return Poll::Pending;
        };
        let left = self.frame_timeout.saturating_sub(waiting);
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(left)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "WebSocket frame not finished in time ([mqtt] packet_timeout_secs)",
        ))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MqttIo for WsStream<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        loop {
            let message = match self.ws.poll_next_unpin(cx) {
                Poll::Pending => {
                    return match self.poll_frame_deadline(cx) {
                        Poll::Ready(e) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                }
                Poll::Ready(None | Some(Ok(Message::Close(_)))) => return Poll::Ready(Ok(0)),
                Poll::Ready(Some(Ok(message))) => message,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
            };
            self.ws.get_ref().frame_done();
            self.deadline = None;
            match message {
                Message::Binary(data) if !data.is_empty() => {
                    buf.extend_from_slice(&data);
                    return Poll::Ready(Ok(data.len()));
                }
                Message::Text(_) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket frame on an MQTT connection (MQTT needs binary frames)",
                    )))
                }
                _ => continue,
            }
        }
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(bytes)))
            .await
            .map_err(io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}
