//! A gossip frame as gossipd writes it ([`Gossip::standard`]: the standard text, no
//! payload) is carried through the simulator's queue by its numbers alone: the origin's
//! node index, seq, timestamp and hop count.
//!
//! A large run delivers tens of millions of gossip frames, nearly all duplicates. Carried
//! as a shared `Arc<Message>`, each delivery reads the message's memory (a cache miss, the
//! message having been made by another node long before) and drops a reference count
//! that the other thread may be touching too. Carried by value, a duplicate is checked
//! from the queue entry alone, and a first sight rebuilds the very same message. Any
//! other frame (a payload, a text of its own, numbers too large) goes as an `Arc`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{ByAddr, EPOCH};
use crate::proto::message::is_gossip_text;
use crate::proto::{ConnId, Gossip, GossipId, Message, Millis};

/// A standard gossip frame for the connection `conn` of the node it is queued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compact {
    conn: u32,
    fields: Fields,
}

/// What a standard frame is made from, every number in 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    /// The origin's node index.
    origin: u32,
    seq: u32,
    /// The timestamp, in ms after [`EPOCH`].
    ts: u32,
    hops: u32,
}

impl Compact {
    pub(crate) fn conn(&self) -> ConnId {
        ConnId(u64::from(self.conn))
    }

    /// The message's identity, given the origin's address.
    pub(crate) fn id(&self, origin: SocketAddr) -> GossipId {
        GossipId {
            origin,
            seq: u64::from(self.fields.seq),
            ts: self.ts(),
        }
    }

    /// The message itself, given the origin's address.
    pub(crate) fn message(&self, origin: SocketAddr) -> Message {
        let (seq, hops) = (u64::from(self.fields.seq), self.fields.hops);
        Message::Gossip(Gossip::standard(origin, seq, self.ts(), hops))
    }

    /// The origin's node index.
    pub(crate) fn origin(&self) -> usize {
        self.fields.origin as usize
    }

    fn ts(&self) -> Millis {
        EPOCH + Millis::from(self.fields.ts)
    }
}

/// Recent origins remembered by a [`Compactor`]: a run has a few originators, and
/// looking one up in the simulator's address map is a cache miss.
const ORIGINS_KEPT: usize = 16;

/// Turns frames into [`Compact`] ones where it can, remembering the last frame: a
/// broadcast sends the same `Arc` on each connection in a row. Holding the `Arc` keeps
/// its address from being reused by another message meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    last: Option<(Arc<Message>, Option<Fields>)>,
    origins: Vec<(SocketAddr, u32)>,
}

impl Compactor {
    /// `msg` as a compact frame for the receiver's connection `conn`, or None when it
    /// must go as it is.
    pub(crate) fn compact(
        &mut self,
        msg: &Arc<Message>,
        conn: ConnId,
        by_addr: &ByAddr,
    ) -> Option<Compact> {
        let conn = u32::try_from(conn.0).ok()?;
        let fields = match &self.last {
            Some((m, fields)) if Arc::ptr_eq(m, msg) => *fields,
            _ => {
                let fields = self.fields(msg, by_addr);
                self.last = Some((Arc::clone(msg), fields));
                fields
            }
        };
        Some(Compact {
            conn,
            fields: fields?,
        })
    }

    fn fields(&mut self, msg: &Message, by_addr: &ByAddr) -> Option<Fields> {
        let Message::Gossip(g) = msg else {
            return None;
        };
        if g.payload.is_some() || !is_gossip_text(&g.text, g.ts, g.origin, g.seq) {
            return None;
        }
        Some(Fields {
            origin: self.origin_index(g.origin, by_addr)?,
            seq: u32::try_from(g.seq).ok()?,
            ts: u32::try_from(g.ts.checked_sub(EPOCH)?).ok()?,
            hops: g.hops,
        })
    }

    fn origin_index(&mut self, origin: SocketAddr, by_addr: &ByAddr) -> Option<u32> {
        if let Some((_, i)) = self.origins.iter().find(|(a, _)| *a == origin) {
            return Some(*i);
        }
        let i = *by_addr.get(&origin)?;
        if self.origins.len() == ORIGINS_KEPT {
            self.origins.remove(0);
        }
        self.origins.push((origin, i));
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, i], 9000))
    }

    fn nodes() -> ByAddr {
        (1..=3).map(|i| (addr(i), u32::from(i) + 10)).collect()
    }

    fn standard(seq: u64, ts: Millis, hops: u32) -> Arc<Message> {
        Arc::new(Message::Gossip(Gossip::standard(addr(2), seq, ts, hops)))
    }

    #[test]
    fn a_standard_frame_comes_back_the_same() {
        let msg = standard(7, EPOCH + 1234, 3);
        let c = Compactor::default().compact(&msg, ConnId(5), &nodes());
        let Some(c) = c else {
            panic!("a standard frame should be compact");
        };
        assert_eq!((c.conn(), c.origin()), (ConnId(5), 12));
        assert_eq!(c.message(addr(2)), *msg);
        let id = GossipId {
            origin: addr(2),
            seq: 7,
            ts: EPOCH + 1234,
        };
        assert_eq!(c.id(addr(2)), id);
    }

    #[test]
    fn any_other_frame_goes_as_it_is() {
        let mut own_text = Gossip::standard(addr(2), 7, EPOCH + 1, 1);
        own_text.text.push('!');
        let mut payload = Gossip::standard(addr(2), 7, EPOCH + 1, 1);
        payload.payload = Some(serde_json::json!([0.5]));
        let others = [
            Message::Gossip(own_text),
            Message::Gossip(payload),
            Message::Gossip(Gossip::standard(addr(9), 7, EPOCH + 1, 1)),
            Message::Gossip(Gossip::standard(addr(2), 1 << 32, EPOCH + 1, 1)),
            Message::Gossip(Gossip::standard(addr(2), 7, EPOCH - 1, 1)),
            Message::Gossip(Gossip::standard(addr(2), 7, EPOCH + (1 << 32), 1)),
            Message::Hello { addr: addr(2) },
        ];
        for msg in others {
            let c = Compactor::default().compact(&Arc::new(msg.clone()), ConnId(5), &nodes());
            assert_eq!(c, None, "{msg:?}");
        }
        let msg = standard(7, EPOCH, 1);
        let c = Compactor::default().compact(&msg, ConnId(1 << 32), &nodes());
        assert_eq!(c, None, "a connection id past 32 bits");
    }

    #[test]
    fn each_frame_of_a_broadcast_is_compacted_for_its_own_connection() {
        let mut compactor = Compactor::default();
        let (a, b) = (standard(1, EPOCH, 1), standard(2, EPOCH, 1));
        let conns: Vec<Option<ConnId>> = [(&a, 1), (&a, 2), (&b, 3)]
            .iter()
            .map(|(m, conn)| compactor.compact(m, ConnId(*conn), &nodes()))
            .map(|c| c.map(|c| c.conn()))
            .collect();
        assert_eq!(conns, [Some(ConnId(1)), Some(ConnId(2)), Some(ConnId(3))]);
        let c = compactor.compact(&b, ConnId(4), &nodes());
        assert_eq!(c.map(|c| c.message(addr(2))), Some((*b).clone()));
    }
}
