//! Charging a call once it is over: its cost from the real usage (or, for a stream the client
//! cut, from what was delivered), settled into every level's meter, and one spend log row
//! queued for the batched writer. Nothing here touches the disk.

use crate::limits::{Admission, SpendQueue, pricing};
use crate::metrics::ModelMetrics;
use crate::providers::{ByteStream, Usage, UsageSlot};
use crate::router::Member;
use crate::store::usage::SpendLogRow;
use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Everything needed to charge one call when it ends.
pub struct Meterage {
    pub admission: Option<Admission>,
    /// The model group's metrics, and when the request arrived.
    pub model: Arc<ModelMetrics>,
    pub started: Instant,
    pub queue: SpendQueue,
    pub row: SpendLogRow,
    /// Prompt tokens guessed from the request size, for a stream cut before its usage came.
    pub prompt_estimate: u64,
}

impl Meterage {
    /// Charges the call. `usage` is the provider's; without it (a stream cut by the client),
    /// each delivered event counts as one completion token.
    pub fn finish(mut self, deployment: Option<&Member>, usage: Option<Usage>, delivered: u64) {
        let usage = usage.unwrap_or(Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: delivered,
        });
        let row = &mut self.row;
        row.end_ms = crate::types::now_ms();
        if let Some(m) = deployment {
            let d = &m.deployment;
            row.model_id = d.id.clone();
            row.api_base = d.api_base.clone();
            row.prompt_tokens = usage.prompt_tokens;
            row.completion_tokens = usage.completion_tokens;
            row.total_tokens = usage.prompt_tokens + usage.completion_tokens;
            row.spend = pricing::cost(
                usage.prompt_tokens,
                usage.completion_tokens,
                d.input_cost_per_token,
                d.output_cost_per_token,
                &d.upstream_model,
            );
            self.model
                .usage(row.prompt_tokens, row.completion_tokens, row.spend);
        }
        if let Some(admission) = self.admission.take() {
            if row.status == "success" {
                for c in admission.settle(row.spend, row.total_tokens) {
                    tracing::warn!(level = c.level, id = %c.id, threshold = ?c.threshold, spend = c.spend, budget = c.budget, "budget threshold crossed");
                }
            } else {
                drop(admission);
            }
        }
        if !self.queue.try_push(std::mem::take(&mut self.row)) {
            tracing::warn!("spend log queue is full; a spend log row was dropped");
        }
    }
}

/// Wraps a reply stream: counts delivered events, and charges the call when the stream ends
/// or the client goes away.
pub fn metered(
    inner: ByteStream,
    meterage: Meterage,
    usage: UsageSlot,
    deployment: Arc<Member>,
) -> ByteStream {
    Box::pin(Metered {
        inner,
        pending: Some((meterage, usage, deployment)),
        delivered: 0,
        first: true,
    })
}

struct Metered {
    inner: ByteStream,
    pending: Option<(Meterage, UsageSlot, Arc<Member>)>,
    delivered: u64,
    /// No chunk has been seen yet (time to first token not recorded).
    first: bool,
}

impl Metered {
    fn charge(&mut self) {
        if let Some((m, slot, deployment)) = self.pending.take() {
            let usage = slot.lock().ok().and_then(|u| *u);
            m.model.duration(m.started.elapsed());
            m.finish(Some(&deployment), usage, self.delivered);
        }
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let out = self.inner.as_mut().poll_next(cx);
        match &out {
            Poll::Ready(Some(Ok(chunk))) => {
                // An SSE event per `data:` line: a fair count of delivered tokens.
                self.delivered += memchr_count(chunk, b"data:");
                if self.first {
                    self.first = false;
                    if let Some((m, ..)) = &self.pending {
                        m.model.first_token(m.started.elapsed());
                    }
                }
            }
            Poll::Ready(None) => self.charge(),
            _ => {}
        }
        out
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.charge();
    }
}

fn memchr_count(hay: &[u8], needle: &[u8]) -> u64 {
    memchr::memmem::find_iter(hay, needle).count() as u64
}
