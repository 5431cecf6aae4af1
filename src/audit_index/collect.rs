//! A page of hits by sequence number, and the number of hits, in one pass.
//!
//! tantivy's ordered `TopDocs` keeps a heap of offset + limit entries and pays a heap operation
//! per hit once it is full — and audit hits arrive in ascending sequence order within a
//! segment, the worst case for a newest-first heap. This collector instead appends each hit that
//! beats the current threshold to a buffer and, when the buffer holds twice what the page needs,
//! keeps the best half with a linear-time selection: amortised O(1) per hit in either order,
//! memory bounded by twice offset + limit (or by the hit count, when that is smaller).

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// Below this the buffer is not worth pruning.
const MIN_BUFFER: usize = 1024;

pub struct SeqPage {
    /// How many of the best hits to keep: the page's offset plus its limit.
    pub keep: usize,
    pub newest_first: bool,
}

pub struct SeqPageSegment {
    column: Column<u64>,
    keep: usize,
    newest_first: bool,
    buf: Vec<u64>,
    hits: usize,
    /// A hit must beat this to be kept (the worst of the kept, after a prune).
    bound: Option<u64>,
    scratch: Vec<Option<u64>>,
}

/// Keeps the `keep` best of `buf` (unordered).
fn prune(buf: &mut Vec<u64>, keep: usize, newest_first: bool) {
    if buf.len() <= keep || keep == 0 {
        return;
    }
    if newest_first {
        buf.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
    } else {
        buf.select_nth_unstable(keep - 1);
    }
    buf.truncate(keep);
}

impl SeqPageSegment {
    fn take(&mut self, v: u64) {
        self.hits += 1;
        let better = match self.bound {
            None => true,
            Some(b) if self.newest_first => v > b,
            Some(b) => v < b,
        };
        if !better {
            return;
        }
        self.buf.push(v);
        if self.buf.len() >= self.keep.saturating_mul(2).max(MIN_BUFFER) {
            prune(&mut self.buf, self.keep, self.newest_first);
            self.bound = self.buf.get(self.keep.saturating_sub(1)).copied();
        }
    }
}

impl SegmentCollector for SeqPageSegment {
    type Fruit = (Vec<u64>, usize);

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(v) = self.column.first(doc) {
            self.take(v);
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.scratch.clear();
        self.scratch.resize(docs.len(), None);
        let mut scratch = std::mem::take(&mut self.scratch);
        self.column.first_vals(docs, &mut scratch);
        for v in scratch.iter().flatten() {
            self.take(*v);
        }
        self.scratch = scratch;
    }

    fn harvest(self) -> (Vec<u64>, usize) {
        (self.buf, self.hits)
    }
}

impl Collector for SeqPage {
    type Fruit = (Vec<u64>, usize);
    type Child = SeqPageSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SeqPageSegment> {
        Ok(SeqPageSegment {
            column: segment.fast_fields().u64("seq")?,
            keep: self.keep,
            newest_first: self.newest_first,
            buf: Vec::new(),
            hits: 0,
            bound: None,
            scratch: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// The best `keep` hits of all segments, in order, and the number of hits.
    fn merge_fruits(&self, fruits: Vec<(Vec<u64>, usize)>) -> tantivy::Result<(Vec<u64>, usize)> {
        let hits = fruits.iter().map(|(_, n)| n).sum();
        let mut all: Vec<u64> = fruits.into_iter().flat_map(|(b, _)| b).collect();
        prune(&mut all, self.keep, self.newest_first);
        if self.newest_first {
            all.sort_unstable_by(|a, b| b.cmp(a));
        } else {
            all.sort_unstable();
        }
        Ok((all, hits))
    }
}

#[cfg(test)]
mod tests {
    use super::prune;

    #[test]
    fn prune_keeps_the_best_in_either_order() {
        let mut v: Vec<u64> = (1..=100).collect();
        prune(&mut v, 5, true);
        v.sort_unstable();
        assert_eq!(v, [96, 97, 98, 99, 100]);
        let mut v: Vec<u64> = (1..=100).rev().collect();
        prune(&mut v, 3, false);
        v.sort_unstable();
        assert_eq!(v, [1, 2, 3]);
        let mut v = vec![5, 1];
        prune(&mut v, 10, true);
        assert_eq!(v.len(), 2);
    }
}
