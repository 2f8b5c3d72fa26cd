//! Catching a neighbour up: the messages it may have missed, sent again on its link.
//!
//! Gossip is pushed once, at the moment a peer first sees it, to the neighbours it has
//! then. A peer whose join was slowed (one lost SYN costs a second) links up after the
//! messages of that moment were flooded, and would never get those of the origins it
//! does not link to itself. So a new neighbour gets this peer's own recent messages and
//! the ones it relayed lately; one found answering again after a missed liveness check
//! gets the own ones (nobody else would send those again; the others reach it through
//! its other neighbours). Receivers drop what they have seen.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{addrs, PeerCore};
use crate::proto::message::is_gossip_text;
use crate::proto::{ConnId, Gossip, Message, Millis};

/// Relayed messages kept for a new neighbour. A peer whose every neighbour fails (a
/// few in a thousand do when 15% of the peers fail at once) hears nothing until liveness
/// finds the frozen ones and it links up anew, (misses + 1) intervals later at worst: in
/// a 2,000-peer swarm with 100 originators that was 52 messages it never got while 32
/// were kept. 256 cover about 12 s of that load, at 32 bytes each for plain messages
/// (8 KiB a peer at most, allocated only as messages flow); per origin, the seen-cache
/// window takes the last 32.
pub(super) const RELAYED_KEPT: usize = 256;

/// Text and payload bytes kept of relayed messages that are not plain: a neighbour can
/// send frames up to `--max-frame` (1 MiB), and a few of them should not stay behind. A
/// larger one is not kept at all.
pub(super) const WHOLE_BYTES_KEPT: usize = 64 * 1024;

/// A relayed message as kept. Nearly all are plain (an IPv4 origin, the standard text,
/// no payload) and kept as 32 bytes from which the frame is built again: a million
/// simulated peers keep 10 each, and as whole messages they came to 1.5 GiB. Others
/// are kept whole, with the bytes of their text and payload.
#[derive(Debug)]
enum Kept {
    Plain {
        origin: u64,
        seq: u64,
        ts: Millis,
        hops: u32,
    },
    Whole(Arc<Message>, usize),
}

impl Kept {
    fn new(g: &Gossip, msg: &Arc<Message>) -> Self {
        match g.origin {
            SocketAddr::V4(v4)
                if g.payload.is_none() && is_gossip_text(&g.text, g.ts, g.origin, g.seq) =>
            {
                Kept::Plain {
                    origin: addrs::key(&v4),
                    seq: g.seq,
                    ts: g.ts,
                    hops: g.hops,
                }
            }
            _ => Kept::Whole(Arc::clone(msg), text_and_payload_bytes(g)),
        }
    }

    /// The bytes counted against [`WHOLE_BYTES_KEPT`].
    fn bytes(&self) -> usize {
        match self {
            Kept::Plain { .. } => 0,
            Kept::Whole(_, bytes) => *bytes,
        }
    }

    fn created(&self) -> Millis {
        match self {
            Kept::Plain { ts, .. } => *ts,
            Kept::Whole(m, _) => match m.as_ref() {
                Message::Gossip(g) => g.ts,
                _ => 0,
            },
        }
    }

    fn message(&self) -> Arc<Message> {
        match *self {
            Kept::Plain {
                origin,
                seq,
                ts,
                hops,
            } => {
                let origin = addrs::from_key(origin);
                Arc::new(Message::Gossip(Gossip::standard(origin, seq, ts, hops)))
            }
            Kept::Whole(ref m, _) => Arc::clone(m),
        }
    }
}

/// The last messages this peer relayed, oldest first: at most [`RELAYED_KEPT`], and of
/// those kept whole at most [`WHOLE_BYTES_KEPT`] bytes. The queue grows by a quarter at
/// a time, not doubling, so that little room is left unused in each peer.
#[derive(Debug, Default)]
pub(super) struct Relayed {
    kept: VecDeque<Kept>,
    whole_bytes: usize,
}

impl Relayed {
    /// Keeps `msg`, a gossip frame relayed, dropping the oldest to make room.
    pub(super) fn push(&mut self, msg: &Arc<Message>) {
        let Message::Gossip(g) = msg.as_ref() else {
            return;
        };
        let kept = Kept::new(g, msg);
        let bytes = kept.bytes();
        if bytes > WHOLE_BYTES_KEPT {
            return;
        }
        while self.kept.len() >= RELAYED_KEPT || self.whole_bytes + bytes > WHOLE_BYTES_KEPT {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            self.whole_bytes = self.whole_bytes.saturating_sub(old.bytes());
        }
        self.whole_bytes += bytes;
        if self.kept.len() == self.kept.capacity() {
            // A quarter more at a time, two at least: few copies, little slack in each
            // of many peers (one at a time, ten messages cost nine copies).
            let room = RELAYED_KEPT.saturating_sub(self.kept.len()).max(1);
            let more = (self.kept.len() / 4).max(2).min(room);
            self.kept.reserve_exact(more);
        }
        self.kept.push_back(kept);
    }

    /// Forgets those created more than `ttl` before `now` (a receiver would take them
    /// for old ones); the rest as frames, oldest first.
    fn fresh(&mut self, now: Millis, ttl: Millis) -> Vec<Arc<Message>> {
        let whole_bytes = &mut self.whole_bytes;
        self.kept.retain(|k| {
            let keep = k.created().saturating_add(ttl) >= now;
            if !keep {
                *whole_bytes = whole_bytes.saturating_sub(k.bytes());
            }
            keep
        });
        self.kept.iter().map(Kept::message).collect()
    }
}

/// The length of `g`'s text and of its payload as JSON.
fn text_and_payload_bytes(g: &Gossip) -> usize {
    let mut count = ByteCount(0);
    if let Some(p) = &g.payload {
        // Writing to a counter cannot fail; were it to, the length so far still counts.
        let _ = serde_json::to_writer(&mut count, p);
    }
    g.text.len() + count.0
}

/// An `io::Write` that only counts what it is given.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PeerCore {
    /// A neighbour linked up on `conn`: it gets our own recent messages and the ones we
    /// relayed lately.
    pub(super) fn catch_up(&mut self, conn: ConnId, now: Millis) {
        self.send_own(conn, now);
        let ttl = self.cfg.seen_ttl;
        for msg in self.relayed.fresh(now, ttl) {
            self.out.send(conn, msg);
            self.stats.gossip_frames_sent += 1;
        }
    }

    /// Sends this peer's recent messages on `conn` again, forgetting those too old for any
    /// receiver to take.
    pub(super) fn send_own(&mut self, conn: ConnId, now: Millis) {
        let ttl = self.cfg.seen_ttl;
        self.own.retain(|ts| ts.saturating_add(ttl) >= now);
        let first = self.stats.gossip_created + 1 - self.own.len() as u64;
        let origin = self.cfg.addr;
        for (seq, &ts) in (first..).zip(&self.own) {
            let gossip = Gossip::standard(origin, seq, ts, 1);
            self.out.send_msg(conn, Message::Gossip(gossip));
            self.stats.gossip_frames_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::gossip_text;

    fn gossip(seq: u64, text: String) -> Arc<Message> {
        Arc::new(Message::Gossip(Gossip {
            origin: SocketAddr::from(([10, 0, 0, 1], 9001)),
            seq,
            ts: 1_000 + seq,
            text,
            hops: 2,
            payload: None,
        }))
    }

    fn seqs(r: &mut Relayed, now: Millis) -> Vec<u64> {
        let fresh = r.fresh(now, 10_000);
        let seq = |m: &Arc<Message>| match m.as_ref() {
            Message::Gossip(g) => g.seq,
            _ => 0,
        };
        fresh.iter().map(seq).collect()
    }

    #[test]
    fn a_kept_message_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<Kept>(), 32);
    }

    #[test]
    fn messages_kept_whole_stay_within_their_byte_budget() {
        let mut r = Relayed::default();
        let tenth = WHOLE_BYTES_KEPT / 10;
        for seq in 1..=12 {
            r.push(&gossip(seq, "x".repeat(tenth)));
        }
        assert_eq!(seqs(&mut r, 1_000), (3..=12).collect::<Vec<_>>());
        assert_eq!(r.whole_bytes, 10 * tenth);
        r.push(&gossip(13, "x".repeat(WHOLE_BYTES_KEPT + 1)));
        assert_eq!(r.kept.len(), 10, "one over the budget is not kept");
        let plain = gossip_text(1_014, SocketAddr::from(([10, 0, 0, 1], 9001)), 14);
        r.push(&gossip(14, plain));
        assert_eq!(r.whole_bytes, 10 * tenth, "a plain one costs no budget");
        assert_eq!(seqs(&mut r, 11_010), vec![10, 11, 12, 14], "past the TTL");
        assert_eq!(r.whole_bytes, 3 * tenth, "and their bytes are freed");
    }

    #[test]
    fn a_payload_counts_as_its_json() {
        let Message::Gossip(mut g) = gossip(1, "t".into()).as_ref().clone() else {
            unreachable!()
        };
        g.payload = Some(serde_json::json!({"w": [1, 2]}));
        assert_eq!(text_and_payload_bytes(&g), 1 + r#"{"w":[1,2]}"#.len());
    }
}
