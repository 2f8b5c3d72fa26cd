//! The simulator's event queue: a calendar of one-millisecond buckets for the next few
//! seconds and a heap for anything later.
//!
//! Pure data structure: it never reads a clock. Entries due at the same instant come out in
//! the order they were pushed, whether they waited in the heap or in a bucket, so a run is
//! a function of its inputs alone. Network latencies are a few ms, so nearly every push and
//! pop is a `Vec` push into the bucket of its millisecond: no comparisons, no side table.
//!
//! A busy bucket grows by chunks of [`CHUNK`] entries, not by doubling one vector: a
//! doubling vector copies itself into fresh memory each time and frees the old, and a
//! large run's buckets (millions of entries a millisecond) did that all the time; the
//! allocator handed the freed memory back to the kernel, and fresh pages cost the most
//! where memory is largest. Chunks go round instead: a batch's chunks, once gathered,
//! wait in a free list for the next buckets.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::proto::Millis;

/// Buckets in the calendar: entries due within this many ms of the base go to a bucket.
const SLOTS: u64 = 4096;
const MASK: u64 = SLOTS - 1;
/// Entries in a full chunk. A bucket's first vector grows by doubling up to this (a
/// timer a second ahead holds a few entries, not a chunk); past it, chunks are added.
const CHUNK: usize = 4096;
/// A bucket this close to the base that gets its first entry starts with a free chunk.
const NEAR: u64 = 64;
/// Batches gathered from several chunks, kept to gather the next ones into.
const POOL: usize = 2;
/// Free chunks kept beyond what the queued entries would fill.
const FREE_SLACK: usize = 64;

/// An entry due after the calendar's window, ordered by (due time, push order).
struct Far<T> {
    at: Millis,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Far<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Far<T> {}

impl<T> PartialOrd for Far<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Far<T> {
    /// Reversed, so the max-heap yields the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One millisecond's entries, in push order across its chunks.
struct Bucket<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Bucket<T> {
    fn default() -> Self {
        Bucket { chunks: Vec::new() }
    }
}

impl<T> Bucket<T> {
    fn is_empty(&self) -> bool {
        self.chunks.iter().all(Vec::is_empty)
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The chunk the next entry goes to, unless the bucket needs a new one.
    fn tail(&mut self) -> Option<&mut Vec<T>> {
        self.chunks
            .last_mut()
            .filter(|c| c.len() < c.capacity() || c.capacity() < CHUNK)
    }
}

/// The queue. Invariant: bucket `t & MASK` holds exactly the entries due at `t`, for every
/// `t` in `[base, base + SLOTS)`; the heap holds the entries due at `base + SLOTS` or later.
pub(crate) struct Calendar<T> {
    base: Millis,
    slots: Vec<Bucket<T>>,
    /// Entries in the buckets.
    near: usize,
    far: BinaryHeap<Far<T>>,
    far_seq: u64,
    /// Emptied batches, kept for their capacity.
    pool: Vec<Vec<T>>,
    /// Empty chunks of `CHUNK` capacity.
    free: Vec<Vec<T>>,
}

impl<T> Calendar<T> {
    /// An empty queue whose earliest possible due time is `base`.
    pub(crate) fn new(base: Millis) -> Self {
        Calendar {
            base,
            slots: (0..SLOTS).map(|_| Bucket::default()).collect(),
            near: 0,
            far: BinaryHeap::new(),
            far_seq: 0,
            pool: Vec::new(),
            free: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.near + self.far.len()
    }

    /// Queues `item` for `at` (an earlier time than any queued one is taken as the earliest).
    pub(crate) fn push(&mut self, at: Millis, item: T) {
        let at = at.max(self.base);
        if at - self.base < SLOTS {
            self.push_near(at, item);
        } else {
            let seq = self.far_seq;
            self.far_seq += 1;
            self.far.push(Far { at, seq, item });
        }
    }

    fn push_near(&mut self, at: Millis, item: T) {
        self.near += 1;
        if let Some(tail) = self.bucket(at).tail() {
            return tail.push(item);
        }
        let mut chunk = match self.bucket(at).chunks.is_empty() && at - self.base >= NEAR {
            true => Vec::new(),
            false => self.free.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK)),
        };
        chunk.push(item);
        self.bucket(at).chunks.push(chunk);
    }

    fn bucket(&mut self, at: Millis) -> &mut Bucket<T> {
        // The index is masked to the table's size, so it is always in range.
        let i = (at & MASK) as usize;
        &mut self.slots[i]
    }

    /// Gives a processed batch's memory back for reuse.
    pub(crate) fn recycle(&mut self, mut batch: Vec<T>) {
        if batch.capacity() == CHUNK {
            self.free_chunk(batch);
        } else if self.pool.len() < POOL {
            batch.clear();
            self.pool.push(batch);
        }
    }

    /// Keeps an emptied chunk, unless the free list holds as many as the buckets' entries
    /// would fill (plus some slack): after a busy spell the memory goes back.
    fn free_chunk(&mut self, mut chunk: Vec<T>) {
        let keep = self.near / CHUNK + FREE_SLACK;
        if self.free.len() < keep {
            chunk.clear();
            self.free.push(chunk);
        }
        self.free.truncate(keep);
    }

    /// Takes every entry due at the earliest instant, if that instant is at most `until`.
    /// Entries pushed for that same instant meanwhile come out in the next call.
    pub(crate) fn pop_due(&mut self, until: Millis) -> Option<(Millis, Vec<T>)> {
        loop {
            if self.near == 0 {
                let at = self.far.peek()?.at;
                if at > until {
                    return None;
                }
                self.advance_to(at);
                continue;
            }
            if self.base > until {
                return None;
            }
            let base = self.base;
            let bucket = self.bucket(base);
            if bucket.is_empty() {
                bucket.chunks.clear();
                self.advance_to(base + 1);
                continue;
            }
            let chunks = std::mem::take(&mut bucket.chunks);
            self.near -= chunks.iter().map(Vec::len).sum::<usize>();
            return Some((base, self.gather(chunks)));
        }
    }

    /// One bucket's chunks as one batch: a lone chunk as it is, several copied into a
    /// kept batch, their chunks freed.
    fn gather(&mut self, mut chunks: Vec<Vec<T>>) -> Vec<T> {
        if chunks.len() == 1 {
            if let Some(only) = chunks.pop() {
                return only;
            }
        }
        let len = chunks.iter().map(Vec::len).sum();
        let mut batch = self.pool.pop().unwrap_or_default();
        batch.reserve_exact(len);
        for mut chunk in chunks {
            batch.append(&mut chunk);
            if chunk.capacity() == CHUNK {
                self.free_chunk(chunk);
            }
        }
        batch
    }

    /// Drops the entries `keep` rejects; the others keep their order. A scan of every
    /// bucket and the heap, for rare events (a node's restart).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for chunk in self.slots.iter_mut().flat_map(|b| b.chunks.iter_mut()) {
            chunk.retain(|item| keep(item));
        }
        self.near = self.slots.iter().map(Bucket::len).sum();
        self.far.retain(|f| keep(&f.item));
    }

    /// Moves the base to `t` (every bucket before `t` being empty) and brings heap entries
    /// that now fall inside the window into their buckets, in push order.
    fn advance_to(&mut self, t: Millis) {
        self.base = t;
        let end = t + SLOTS;
        while self.far.peek().is_some_and(|f| f.at < end) {
            if let Some(f) = self.far.pop() {
                self.push_near(f.at, f.item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut Calendar<u32>, until: Millis) -> Vec<(Millis, u32)> {
        let mut out = Vec::new();
        while let Some((at, batch)) = q.pop_due(until) {
            out.extend(batch.iter().map(|&v| (at, v)));
            q.recycle(batch);
        }
        out
    }

    #[test]
    fn entries_come_out_by_time_then_push_order() {
        let mut q = Calendar::new(100);
        for (i, at) in [105, 101, 105, 100, 9_000, 101, 9_000, 50_000]
            .iter()
            .enumerate()
        {
            q.push(*at, i as u32);
        }
        let out = drain(&mut q, u64::MAX);
        let expect = [
            (100, 3),
            (101, 1),
            (101, 5),
            (105, 0),
            (105, 2),
            (9_000, 4),
            (9_000, 6),
            (50_000, 7),
        ];
        assert_eq!(out, expect);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn far_entries_precede_later_pushes_for_the_same_instant() {
        let mut q = Calendar::new(0);
        q.push(SLOTS + 10, 1);
        q.push(5, 0);
        assert_eq!(drain(&mut q, 5), vec![(5, 0)]);
        // The far entry is in the window now; a later push for the same ms comes after it.
        q.push(SLOTS + 10, 2);
        assert_eq!(
            drain(&mut q, u64::MAX),
            vec![(SLOTS + 10, 1), (SLOTS + 10, 2)]
        );
    }

    #[test]
    fn nothing_after_until_comes_out() {
        let mut q = Calendar::new(0);
        q.push(10, 1);
        q.push(20_000, 2);
        assert!(drain(&mut q, 9).is_empty());
        assert_eq!(drain(&mut q, 10_000), vec![(10, 1)]);
        assert_eq!(q.len(), 1);
        assert_eq!(drain(&mut q, 20_000), vec![(20_000, 2)]);
    }

    #[test]
    fn retain_drops_entries_near_and_far_and_keeps_the_order_of_the_rest() {
        let mut q = Calendar::new(0);
        for (i, at) in [7, 7, 7, SLOTS + 5, SLOTS + 5, 3].iter().enumerate() {
            q.push(*at, i as u32);
        }
        q.retain(|v| v % 2 == 0);
        assert_eq!(q.len(), 3);
        assert_eq!(
            drain(&mut q, u64::MAX),
            vec![(7, 0), (7, 2), (SLOTS + 5, 4)],
            "odd entries gone, the rest in time then push order"
        );
        q.push(SLOTS + 5, 9);
        q.retain(|_| true);
        assert_eq!(drain(&mut q, u64::MAX), vec![(SLOTS + 5, 9)]);
    }

    #[test]
    fn a_push_for_the_instant_being_run_comes_out_next() {
        let mut q = Calendar::new(0);
        q.push(3, 1);
        let (at, batch) = q.pop_due(10).unwrap_or_default();
        assert_eq!((at, batch), (3, vec![1]));
        q.push(at, 2);
        q.push(1, 3); // in the past: due now
        assert_eq!(drain(&mut q, 10), vec![(3, 2), (3, 3)]);
    }

    #[test]
    fn a_bucket_past_one_chunk_comes_out_whole_and_in_push_order() {
        let mut q = Calendar::new(0);
        let n = 3 * CHUNK as u32 + 5;
        for v in 0..n {
            q.push(2, v);
            q.push(3 + u64::from(v % 2) * 100, n + v);
        }
        let (at, batch) = q.pop_due(2).unwrap_or_default();
        assert_eq!(at, 2);
        assert_eq!(batch, (0..n).collect::<Vec<_>>());
        q.recycle(batch);
        let rest = drain(&mut q, u64::MAX);
        let at_3: Vec<u32> = rest.iter().filter(|e| e.0 == 3).map(|e| e.1).collect();
        let expect: Vec<u32> = (0..n).filter(|v| v % 2 == 0).map(|v| n + v).collect();
        assert_eq!(at_3, expect);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn freed_chunks_are_reused_and_let_go_after_a_busy_spell() {
        let mut q = Calendar::new(0);
        for at in 1..=4 {
            for v in 0..20 * CHUNK as u32 {
                q.push(at, v);
            }
        }
        let (_, first) = q.pop_due(1).unwrap_or_default();
        q.recycle(first);
        let freed = q.free.len();
        assert!(freed >= 19, "a gathered batch frees its chunks ({freed})");
        for v in 0..CHUNK as u32 {
            q.push(10, v);
        }
        assert!(q.free.len() < freed, "a near bucket takes a free chunk");
        let mut most = 0;
        while let Some((_, batch)) = q.pop_due(u64::MAX) {
            q.recycle(batch);
            most = most.max(q.free.len());
        }
        assert!(
            most > FREE_SLACK,
            "chunks were kept while entries waited ({most})"
        );
        assert!(
            q.free.len() <= FREE_SLACK,
            "an empty queue keeps at most the slack ({})",
            q.free.len()
        );
    }
}
