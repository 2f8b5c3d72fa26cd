//! A connection's unsent bytes in two queues: control frames (liveness requests and
//! replies, dead-node reports, hello, register, peer lists) go out ahead of forwarded
//! gossip, so a neighbour busy with a backlog of gossip still answers liveness on time.
//!
//! Pure: frames in, slices to write out. It never splits a frame between the two
//! queues: gossip is written in runs of whole frames, and a run once started is finished
//! before the next control frame.

use crate::codec::HEADER_LEN;

/// Most gossip bytes written in one run: the longest a control frame waits behind gossip
/// this queue has already started to write (plus what the socket buffer holds).
pub const GOSSIP_RUN: usize = 64 * 1024;

/// Bytes queued and the position of the first one not yet written.
#[derive(Debug, Default)]
struct Buf {
    bytes: Vec<u8>,
    pos: usize,
}

impl Buf {
    fn pending(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Drops written bytes once they outweigh the unwritten ones (amortised O(1) a
    /// byte), so a neighbour that reads slowly but never quite catches up does not pin
    /// a buffer that grows forever. Returns how far the bytes moved.
    fn compact(&mut self) -> usize {
        if self.pos == 0 || self.pos < self.pending() {
            return 0;
        }
        let moved = self.pos;
        self.bytes.drain(..moved);
        self.pos = 0;
        moved
    }

    /// Advances past `n` written bytes; an emptied queue gives its memory back.
    fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.bytes.len());
        if self.pos == self.bytes.len() {
            *self = Buf::default();
        }
    }
}

/// The two queues of one connection.
#[derive(Debug, Default)]
pub struct SendQueue {
    control: Buf,
    gossip: Buf,
    /// End of the gossip run being written; `gossip.pos < run_end` while one is.
    run_end: usize,
}

impl SendQueue {
    /// Unsent bytes in both queues.
    pub fn pending(&self) -> usize {
        self.control.pending() + self.gossip.pending()
    }

    /// Queues one whole encoded frame.
    pub fn push(&mut self, frame: &[u8], control: bool) {
        if control {
            self.control.compact();
            self.control.bytes.extend_from_slice(frame);
        } else {
            let moved = self.gossip.compact();
            self.run_end = self.run_end.saturating_sub(moved);
            self.gossip.bytes.extend_from_slice(frame);
        }
    }

    /// The bytes to write next (empty when nothing is queued): the rest of a gossip run
    /// already started, else control frames, else a new gossip run.
    pub fn next_bytes(&mut self) -> &[u8] {
        if self.gossip.pos < self.run_end {
            return self.gossip_run();
        }
        if self.control.pending() > 0 {
            return self
                .control
                .bytes
                .get(self.control.pos..)
                .unwrap_or_default();
        }
        if self.gossip.pending() > 0 {
            self.run_end = run_end(&self.gossip.bytes, self.gossip.pos);
            return self.gossip_run();
        }
        &[]
    }

    /// Records that `n` bytes of the slice [`SendQueue::next_bytes`] gave were written.
    pub fn advance(&mut self, n: usize) {
        if self.gossip.pos < self.run_end {
            self.gossip.advance(n);
            if self.gossip.pos == 0 {
                self.run_end = 0;
            }
        } else {
            self.control.advance(n);
        }
    }

    fn gossip_run(&self) -> &[u8] {
        let run = self.gossip.pos..self.run_end;
        self.gossip.bytes.get(run).unwrap_or_default()
    }
}

/// The end of the run of whole frames from `start`: at least one frame, then more while
/// the run is under [`GOSSIP_RUN`] bytes. The frames are our own, so their headers are
/// sound; a header that is not (it cannot happen) ends the run at the end of the bytes.
fn run_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end - start < GOSSIP_RUN {
        let Some(header) = bytes.get(end..end + HEADER_LEN) else {
            break;
        };
        let mut len = [0; HEADER_LEN];
        len.copy_from_slice(header);
        let next = end + HEADER_LEN + u32::from_be_bytes(len) as usize;
        if next > bytes.len() {
            return bytes.len();
        }
        end = next;
    }
    if end == start {
        bytes.len()
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_frame;

    fn frame(fill: u8, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&vec![fill; len], 1 << 20, &mut out).unwrap();
        out
    }

    /// Writes at most `per_write` bytes at a time until the queue is empty.
    fn drain(q: &mut SendQueue, per_write: usize, wire: &mut Vec<u8>) {
        loop {
            let next = q.next_bytes();
            if next.is_empty() {
                return;
            }
            let n = next.len().min(per_write);
            wire.extend_from_slice(&next[..n]);
            q.advance(n);
        }
    }

    /// The fill byte of each frame on the wire, checking that frames are whole.
    fn frames_on(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let body = &rest[4..4 + len];
            assert!(body.iter().all(|&b| b == body[0]), "frames interleaved");
            out.push(body[0]);
            rest = &rest[4 + len..];
        }
        out
    }

    #[test]
    fn a_control_frame_overtakes_queued_gossip_but_not_the_run_being_written() {
        let mut q = SendQueue::default();
        for _ in 0..100 {
            q.push(&frame(b'g', 1000), false);
        }
        let mut wire = Vec::new();
        // A short write: the first run has started.
        let n = q.next_bytes().len().min(10);
        wire.extend_from_slice(&q.next_bytes()[..n]);
        q.advance(n);
        q.push(&frame(b'c', 50), true);
        drain(&mut q, 4096, &mut wire);
        let order = frames_on(&wire);
        assert_eq!(order.len(), 101);
        let at = order.iter().position(|&b| b == b'c').unwrap();
        let run = GOSSIP_RUN.div_ceil(1004);
        assert_eq!(at, run, "control went out right after the first run");
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn with_no_gossip_started_control_goes_first_and_frames_stay_whole() {
        let mut q = SendQueue::default();
        q.push(&frame(b'a', 300), false);
        q.push(&frame(b'b', 300), true);
        q.push(&frame(b'c', 300), false);
        q.push(&frame(b'd', 300), true);
        let mut wire = Vec::new();
        drain(&mut q, 7, &mut wire);
        assert_eq!(frames_on(&wire), b"bdac");
    }

    #[test]
    fn a_slow_reader_that_never_catches_up_does_not_grow_the_buffer() {
        let mut q = SendQueue::default();
        let f = frame(b'g', 100);
        for _ in 0..10_000 {
            q.push(&f, false);
            q.push(&f, false);
            // It reads a little less than is queued each time.
            let n = q.next_bytes().len().min(f.len() + 50);
            q.advance(n);
            assert!(q.gossip.bytes.len() <= 2 * q.pending() + 2 * f.len());
        }
        let mut wire = Vec::new();
        drain(&mut q, 1000, &mut wire);
        assert!(!wire.is_empty());
        assert_eq!(q.pending(), 0);
    }
}
