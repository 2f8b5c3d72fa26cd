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

use super::{addrs, PeerCore, OWN_KEPT};
use crate::proto::message::{gossip_text, is_gossip_text};
use crate::proto::{ConnId, Gossip, Message, Millis};

/// Relayed messages kept for a new neighbour: as many as own ones.
pub(super) const RELAYED_KEPT: usize = OWN_KEPT;

/// A relayed message as kept. Nearly all are plain (an IPv4 origin, the standard text,
/// no payload) and kept as 32 bytes from which the frame is built again: a million
/// simulated peers keep 10 each, and as whole messages they came to 1.5 GiB.
#[derive(Debug)]
enum Kept {
    Plain {
        origin: u64,
        seq: u64,
        ts: Millis,
        hops: u32,
    },
    Whole(Arc<Message>),
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
            _ => Kept::Whole(Arc::clone(msg)),
        }
    }

    fn created(&self) -> Millis {
        match self {
            Kept::Plain { ts, .. } => *ts,
            Kept::Whole(m) => match m.as_ref() {
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
                Arc::new(Message::Gossip(Gossip {
                    origin,
                    seq,
                    ts,
                    text: gossip_text(ts, origin, seq),
                    hops,
                    payload: None,
                }))
            }
            Kept::Whole(ref m) => Arc::clone(m),
        }
    }
}

/// The last messages this peer relayed, oldest first, at most [`RELAYED_KEPT`]. The
/// queue grows one slot at a time (it is short): no doubling leaves slack in each peer.
#[derive(Debug, Default)]
pub(super) struct Relayed(VecDeque<Kept>);

impl Relayed {
    /// Keeps `msg`, a gossip frame relayed.
    pub(super) fn push(&mut self, msg: &Arc<Message>) {
        let Message::Gossip(g) = msg.as_ref() else {
            return;
        };
        if self.0.len() >= RELAYED_KEPT {
            self.0.pop_front();
        }
        self.0.reserve_exact(1);
        self.0.push_back(Kept::new(g, msg));
    }

    /// Forgets those created more than `ttl` before `now` (a receiver would take them
    /// for old ones); the rest as frames, oldest first.
    fn fresh(&mut self, now: Millis, ttl: Millis) -> Vec<Arc<Message>> {
        self.0.retain(|k| k.created().saturating_add(ttl) >= now);
        self.0.iter().map(Kept::message).collect()
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
            let gossip = Gossip {
                origin,
                seq,
                ts,
                text: gossip_text(ts, origin, seq),
                hops: 1,
                payload: None,
            };
            self.out.send_msg(conn, Message::Gossip(gossip));
            self.stats.gossip_frames_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Kept;

    #[test]
    fn a_kept_message_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<Kept>(), 32);
    }
}
