//! A byte stream that notes when data arrived that no complete WebSocket frame has
//! used yet, so a peer that starts a frame and never finishes it can be closed: the
//! reader calls [`Watched::frame_done`] after each complete message, and asks
//! [`Watched::unfinished_for`] on its timer.
//!
//! tungstenite reads in chunks, so bytes read together with the end of a frame are
//! not watched until more arrive; that leftover is at most one read buffer.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Watched<S> {
    io: S,
    unfinished_since: Cell<Option<Instant>>,
}

impl<S> Watched<S> {
    pub fn new(io: S) -> Watched<S> {
        Watched {
            io,
            unfinished_since: Cell::new(None),
        }
    }

    /// A complete message (data or control) was read: nothing is waiting.
    pub fn frame_done(&self) {
        self.unfinished_since.set(None);
    }

    /// How long bytes of an unfinished frame have been waiting.
    pub fn unfinished_for(&self) -> Option<Duration> {
        self.unfinished_since.get().map(|since| since.elapsed())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before && self.unfinished_since.get().is_none() {
            self.unfinished_since.set(Some(Instant::now()));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
