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
use super::target::{RawTargets, encode_at};

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
    follow: Option<(Follower, Refusal, RawTargets)>,
    /// Bytes for hyper that did not fit its buffer: a request line whose
    /// target grew when encoded (`target`). Already followed.
    pending: Bytes,
}

impl ConnIo {
    /// `replay` is what was read from `inner` already; `follow` is set on
    /// HTTP/1 connections of the consumer listener.
    pub fn new(inner: TcpStream, replay: Bytes, follow: Option<(Refusal, RawTargets)>) -> ConnIo {
        ConnIo {
            replay,
            inner,
            follow: follow.map(|(r, t)| (Follower::default(), r, t)),
            pending: Bytes::new(),
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
        if this.pending.has_remaining() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
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
        if let Some((follower, refusal, targets)) = &mut this.follow {
            follower.feed(&buf.filled()[before..]);
            if let Some(first) = follower.first_refusal() {
                let _ = refusal.set(first);
            }
            if !follower.targets.ready.is_empty() {
                let mut q = targets.lock().unwrap_or_else(|p| p.into_inner());
                q.extend(follower.targets.ready.drain(..));
            }
            if !follower.encode.is_empty() {
                // Rare: a target with bytes hyper refuses. What hyper reads
                // is the encoded target; what does not fit waits.
                let encoded = encode_at(&buf.filled()[before..], &follower.encode);
                buf.set_filled(before);
                let n = encoded.len().min(buf.remaining());
                buf.put_slice(&encoded[..n]);
                this.pending = Bytes::from(encoded).slice(n..);
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
