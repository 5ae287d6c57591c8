//! The byte streams MQTT runs over: TCP and TLS streams as they are, WebSocket as
//! binary messages. The connection handler sees one trait for all four listeners.

use std::future::Future;
use std::io;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub trait MqttIo: Send + 'static {
    /// Appends what arrives next to `buf`; `Ok(0)` at end of stream. Cancel-safe.
    fn read_into(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
    fn write_bytes(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes politely (TLS close_notify, WebSocket close frame).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// TCP or TLS.
pub struct ByteStream<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MqttIo for ByteStream<S> {
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // Small while idle; a read that fills the buffer doubles the next one (up to
        // 64 KiB), so busy publishers still read in large chunks.
        let free = buf.capacity() - buf.len();
        if free < 512 {
            buf.reserve((buf.capacity() * 2).clamp(2048, 64 * 1024));
        }
        self.0.read_buf(buf).await
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await?;
        self.0.flush().await
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// MQTT over WebSocket: each binary message carries bytes of the MQTT stream.
pub struct WsStream<S>(pub WebSocketStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MqttIo for WsStream<S> {
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.0.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Ok(Message::Binary(data))) => {
                    buf.extend_from_slice(&data);
                    if !data.is_empty() {
                        return Ok(data.len());
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket frame on an MQTT connection (MQTT needs binary frames)",
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0
            .send(Message::Binary(bytes.to_vec()))
            .await
            .map_err(io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.0.close(None).await;
    }
}
