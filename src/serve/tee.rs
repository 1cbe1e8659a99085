//! The consumer's response body, streamed through untouched, optionally
//! keeping a copy (up to a cap) for a comparison that runs after the read.
//! Copies are `Bytes` handles to the same buffers, not byte copies.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::decide::budget::Held;
use crate::net::upstream::UpstreamBody;
use tokio::sync::oneshot;

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

/// An upstream response body on its way to the consumer.
#[derive(Debug)]
pub struct Tee {
    inner: UpstreamBody,
    capture: Option<Capture>,
}

impl Tee {
    pub fn new(inner: UpstreamBody, capture: Option<Capture>) -> Tee {
        let mut tee = Tee { inner, capture };
        // An empty body may never be polled: settle its copy now.
        if tee.inner.is_end_stream() {
            tee.finish();
        }
        tee
    }

    fn finish(&mut self) {
        if let Some(c) = self.capture.take() {
            let _ = c.tx.send(Copied::Complete(c.chunks));
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
        if this.capture.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let c = this.capture.as_mut().expect("checked above");
                        let refused = if c.size + data.len() > c.limit {
                            Some(Copied::TooLarge)
                        } else if !c.held.take(data.len()) {
                            Some(Copied::OverBudget)
                        } else {
                            None
                        };
                        if let Some(why) = refused {
                            if let Some(c) = this.capture.take() {
                                let _ = c.tx.send(why);
                            }
                        } else {
                            c.size += data.len();
                            c.chunks.push(data.clone());
                        }
                    }
                    if this.inner.is_end_stream() {
                        this.finish();
                    }
                }
                Poll::Ready(None) => this.finish(),
                // An error mid-body: drop the sender, the comparison skips.
                Poll::Ready(Some(Err(_))) => this.capture = None,
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
