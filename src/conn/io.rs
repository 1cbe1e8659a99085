//! A consumer's socket as hyper sees it: the bytes cutover read to tell the
//! protocol are replayed first, and on HTTP/1 every byte read is shown to
//! the framing follower before hyper parses it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::framing::Follower;

/// The first request on a connection whose framing cutover refuses: its
/// index on the connection and why. Set once; every request from it on is
/// refused, and the connection closes after the first refusal.
pub type Refusal = Arc<OnceLock<(u64, &'static str)>>;

/// Whether request `n` of a connection is refused, and why.
pub fn refused(refusal: &Refusal, n: u64) -> Option<&'static str> {
    refusal
        .get()
        .filter(|(at, _)| n >= *at)
        .map(|(_, why)| *why)
}

pub struct ConnIo {
    replay: Bytes,
    inner: TcpStream,
    follow: Option<(Follower, Refusal)>,
}

impl ConnIo {
    /// `replay` is what was read from `inner` already; `follow` is set on
    /// HTTP/1 connections of the consumer listener.
    pub fn new(inner: TcpStream, replay: Bytes, follow: Option<Refusal>) -> ConnIo {
        ConnIo {
            replay,
            inner,
            follow: follow.map(|r| (Follower::default(), r)),
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if this.replay.has_remaining() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            if this.replay.is_empty() {
                // Not kept for the connection's life.
                this.replay = Bytes::new();
            }
        } else {
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        if let Some((follower, refusal)) = &mut this.follow {
            follower.feed(&buf.filled()[before..]);
            if let Some(first) = follower.first_refusal() {
                let _ = refusal.set(first);
            }
            if !follower.following() {
                this.follow = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
