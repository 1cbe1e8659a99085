//! The consumer's response body, streamed through untouched, optionally
//! keeping a copy (up to a cap) for a comparison that runs after the read.
//! Copies are `Bytes` handles to the same buffers, not byte copies.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use hyper::body::{Body, Frame, SizeHint};

use crate::decide::budget::Held;
use crate::net::upstream::UpstreamBody;
use tokio::sync::oneshot;

/// The head fields that say how a body is to be read: its
/// `Content-Encoding` (decoded for the comparison only) and its
/// `Content-Type` (which format, when `reconcile.format` is `auto`).
#[derive(Debug, Clone, Default)]
pub struct BodyFraming {
    pub content_encoding: Option<HeaderValue>,
    pub content_type: Option<HeaderValue>,
}

impl BodyFraming {
    pub fn of(headers: &http::HeaderMap) -> BodyFraming {
        BodyFraming {
            content_encoding: headers.get(header::CONTENT_ENCODING).cloned(),
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
        }
    }
}

/// The pieces of a body as one buffer: the piece itself when there is
/// only one (no copy), else one copy of them all.
pub fn concat<'a>(parts: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let mut each = parts.clone();
    match (each.next(), each.next()) {
        (None, _) => Bytes::new(),
        (Some(only), None) => only.clone(),
        _ => {
            // Sized once: growing by doubling would copy a large body again.
            let mut b = BytesMut::with_capacity(parts.clone().map(Bytes::len).sum());
            for p in parts {
                b.extend_from_slice(p);
            }
            b.freeze()
        }
    }
}

/// What the copy ended as.
#[derive(Debug)]
pub enum Copied {
    /// The whole body, as the consumer received it.
    Complete(Vec<Bytes>),
    /// The body was larger than the cap; the copy was dropped.
    TooLarge,
    /// Comparisons in flight held `limits.max_compared_bytes`; the copy
    /// was dropped.
    OverBudget,
}

/// Sends the copy when the body ends. If the consumer goes away first the
/// sender is dropped, which the comparison sees as "aborted".
#[derive(Debug)]
pub struct Capture {
    chunks: Vec<Bytes>,
    size: usize,
    limit: usize,
    /// The comparison's share of the process's byte budget.
    held: Arc<Held>,
    tx: oneshot::Sender<Copied>,
}

impl Capture {
    pub fn new(limit: usize, held: Arc<Held>) -> (Capture, oneshot::Receiver<Copied>) {
        let (tx, rx) = oneshot::channel();
        (
            Capture {
                chunks: Vec::new(),
                size: 0,
                limit,
                held,
                tx,
            },
            rx,
        )
    }
}

/// An upstream response body on its way to the consumer, with up to two
/// copies taken as it streams: one for a comparison, one for a contract
/// check after serving.
#[derive(Debug)]
pub struct Tee {
    inner: UpstreamBody,
    captures: [Option<Capture>; 2],
}

impl Tee {
    pub fn new(inner: UpstreamBody, compare: Option<Capture>, contract: Option<Capture>) -> Tee {
        let mut tee = Tee {
            inner,
            captures: [compare, contract],
        };
        // An empty body may never be polled: settle its copies now.
        if tee.inner.is_end_stream() {
            tee.finish();
        }
        tee
    }

    fn finish(&mut self) {
        for c in self.captures.iter_mut().filter_map(Option::take) {
            let _ = c.tx.send(Copied::Complete(c.chunks));
        }
    }
}

/// Adds one data frame to a copy, or drops the copy (telling why) when
/// the frame would take it past its cap or the budget.
fn keep(slot: &mut Option<Capture>, data: &Bytes) {
    let Some(c) = slot.as_mut() else { return };
    let refused = if c.size + data.len() > c.limit {
        Some(Copied::TooLarge)
    } else if !c.held.take(data.len()) {
        Some(Copied::OverBudget)
    } else {
        None
    };
    match refused {
        Some(why) => {
            if let Some(c) = slot.take() {
                let _ = c.tx.send(why);
            }
        }
        None => {
            c.size += data.len();
            c.chunks.push(data.clone());
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = crate::net::upstream::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::net::upstream::BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.captures.iter().any(Option::is_some) {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        for slot in &mut this.captures {
                            keep(slot, data);
                        }
                    }
                    if this.inner.is_end_stream() {
                        this.finish();
                    }
                }
                Poll::Ready(None) => this.finish(),
                // An error mid-body: drop the senders, the checks skip.
                Poll::Ready(Some(Err(_))) => this.captures = [None, None],
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
