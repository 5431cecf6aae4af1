//! Stream plumbing shared by the providers: the boxed byte stream type and a guard that
//! runs bookkeeping when a stream ends or the client goes away.

use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pin_project_lite::pin_project! {
    struct Guarded<G> {
        #[pin]
        inner: ByteStream,
        guard: Option<G>,
    }
}

impl<G> Stream for Guarded<G> {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let out = this.inner.poll_next(cx);
        if let Poll::Ready(None) = out {
            // Release at the end rather than at drop, so bookkeeping sees the real end time.
            this.guard.take();
        }
        out
    }
}

/// Keeps `guard` alive until the stream ends or is dropped (a client disconnect drops it).
pub fn with_guard<G: Send + 'static>(inner: ByteStream, guard: G) -> ByteStream {
    Box::pin(Guarded {
        inner,
        guard: Some(guard),
    })
}

/// The longest wait allowed between two chunks of an upstream stream. One timer per stream,
/// re-armed per chunk, rather than a new timer for every chunk.
pub struct IdleLimit {
    idle: std::time::Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The upstream went quiet for longer than the limit.
pub struct Stalled;

impl IdleLimit {
    pub fn new(idle: std::time::Duration) -> Self {
        IdleLimit {
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// The next item of `upstream`, or [`Stalled`] if none came in time.
    pub async fn next(
        &mut self,
        upstream: &mut ByteStream,
    ) -> Result<Option<Result<Bytes, std::io::Error>>, Stalled> {
        use futures_util::StreamExt;
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + self.idle);
        tokio::select! {
            biased;
            item = upstream.next() => Ok(item),
            _ = self.sleep.as_mut() => Err(Stalled),
        }
    }
}
