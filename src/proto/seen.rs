//! The Message List: which gossip messages this peer has already seen.
//!
//! Messages are named (origin, seq) and each origin numbers its own 1, 2, 3, ... So the
//! list keeps, per origin, a 64-message window: a base seq and a bitmap of the seqs seen
//! above it. Memory grows with the number of origins, not of messages. Every window
//! expires `ttl` after its origin was last heard of, and a message older than `ttl` by
//! its own timestamp is treated as seen, so an expired window can never let a message
//! circulate again. At most `capacity` origins are tracked; past that the window that
//! would expire first goes.
//!
//! A restarted origin numbers from 1 again: a seq already seen but with a timestamp newer
//! than any before from that origin starts a new incarnation, and anything stamped at or
//! before the old incarnation's last timestamp is then treated as seen.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};

use super::Millis;

/// A message's identity: (origin, seq).
pub type MessageId = (SocketAddr, u64);

const WINDOW: u64 = 64;
/// Where a new or slid window puts its base below the newest seq: room for messages that
/// arrive out of order by this much.
const REORDER: u64 = 32;

#[derive(Debug, Clone, Copy)]
struct Window {
    /// Every seq below `base` counts as seen.
    base: u64,
    /// Bit i: seq `base + i` was seen.
    bits: u64,
    /// Newest timestamp seen from this origin (this incarnation).
    max_ts: Millis,
    /// Messages stamped before this belong to an earlier incarnation (0: none known).
    min_ts: Millis,
    /// When the window may be forgotten.
    expires: Millis,
}

impl Window {
    fn new(seq: u64, ts: Millis, min_ts: Millis, expires: Millis) -> Self {
        let base = seq.saturating_sub(REORDER);
        Window {
            base,
            bits: 1 << (seq - base),
            max_ts: ts,
            min_ts,
            expires,
        }
    }

    fn has(&self, seq: u64) -> bool {
        seq < self.base || (seq - self.base < WINDOW && self.bits & (1 << (seq - self.base)) != 0)
    }

    /// Marks `seq` seen, sliding the window forward when it lies beyond it.
    fn mark(&mut self, seq: u64) {
        if seq - self.base >= WINDOW {
            let new_base = seq - REORDER;
            let shift = new_base - self.base;
            self.bits = if shift >= WINDOW {
                0
            } else {
                self.bits >> shift
            };
            self.base = new_base;
        }
        self.bits |= 1 << (seq - self.base);
    }
}

/// The windows by origin. IPv4 origins (all of them, in practice) are keyed by one
/// integer: 48-byte entries instead of 72, and a cheaper hash on the duplicate path, which
/// a large swarm or simulation runs tens of millions of times. Still SipHash with a random
/// key, as origins come from the network.
#[derive(Debug, Default)]
struct Windows {
    v4: HashMap<u64, Window>,
    v6: HashMap<SocketAddr, Window>,
}

fn v4_key(a: &SocketAddrV4) -> u64 {
    (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())
}

fn from_v4_key(k: u64) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::from_bits((k >> 16) as u32), k as u16))
}

impl Windows {
    fn get(&self, origin: &SocketAddr) -> Option<&Window> {
        match origin {
            SocketAddr::V4(a) => self.v4.get(&v4_key(a)),
            SocketAddr::V6(_) => self.v6.get(origin),
        }
    }

    fn get_mut(&mut self, origin: &SocketAddr) -> Option<&mut Window> {
        match origin {
            SocketAddr::V4(a) => self.v4.get_mut(&v4_key(a)),
            SocketAddr::V6(_) => self.v6.get_mut(origin),
        }
    }

    fn insert(&mut self, origin: SocketAddr, w: Window) {
        match origin {
            SocketAddr::V4(a) => self.v4.insert(v4_key(&a), w),
            SocketAddr::V6(_) => self.v6.insert(origin, w),
        };
    }

    fn remove(&mut self, origin: &SocketAddr) {
        match origin {
            SocketAddr::V4(a) => self.v4.remove(&v4_key(a)),
            SocketAddr::V6(_) => self.v6.remove(origin),
        };
    }

    fn contains_key(&self, origin: &SocketAddr) -> bool {
        self.get(origin).is_some()
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn retain(&mut self, keep: impl Fn(&Window) -> bool) {
        self.v4.retain(|_, w| keep(w));
        self.v6.retain(|_, w| keep(w));
    }

    /// The origin whose window expires first.
    fn first_to_expire(&self) -> Option<SocketAddr> {
        let v4 = self.v4.iter().map(|(k, w)| (w.expires, from_v4_key(*k)));
        let v6 = self.v6.iter().map(|(a, w)| (w.expires, *a));
        v4.chain(v6)
            .min_by_key(|(expires, _)| *expires)
            .map(|(_, a)| a)
    }
}

/// The seen-cache.
#[derive(Debug)]
pub struct SeenCache {
    ttl: Millis,
    capacity: usize,
    windows: Windows,
    next_sweep: Millis,
}

impl SeenCache {
    pub fn new(ttl: Millis, capacity: usize) -> Self {
        SeenCache {
            ttl,
            capacity: capacity.max(1),
            windows: Windows::default(),
            next_sweep: 0,
        }
    }

    /// Whether (origin, seq) stamped `ts` would be new now, without recording it.
    pub fn is_new(&self, (origin, seq): MessageId, ts: Millis, now: Millis) -> bool {
        if ts.saturating_add(self.ttl) < now {
            return false;
        }
        match self.windows.get(&origin) {
            None => true,
            Some(w) if w.expires <= now => true,
            Some(w) => ts >= w.min_ts && (!w.has(seq) || ts > w.max_ts),
        }
    }

    /// Records `id` if it is new and fresh; true when the message is seen for the first time.
    pub fn first_sight(&mut self, id: MessageId, ts: Millis, now: Millis) -> bool {
        self.sweep(now);
        if !self.is_new(id, ts, now) {
            return false;
        }
        let (origin, seq) = id;
        let expires = now.max(ts).saturating_add(self.ttl);
        match self.windows.get_mut(&origin) {
            Some(w) if w.expires > now && w.has(seq) => {
                // Seen seq, newer stamp: the origin restarted.
                *w = Window::new(seq, ts, w.max_ts + 1, expires);
            }
            Some(w) if w.expires > now => {
                w.mark(seq);
                w.max_ts = w.max_ts.max(ts);
                w.expires = w.expires.max(expires);
            }
            _ => {
                self.make_room(&origin);
                self.windows
                    .insert(origin, Window::new(seq, ts, 0, expires));
            }
        }
        true
    }

    /// Origins tracked.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.len() == 0
    }

    /// Drops expired windows, at most once per quarter TTL.
    fn sweep(&mut self, now: Millis) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.saturating_add(self.ttl / 4);
        self.windows.retain(|w| w.expires > now);
    }

    fn make_room(&mut self, origin: &SocketAddr) {
        if self.windows.len() < self.capacity || self.windows.contains_key(origin) {
            return;
        }
        if let Some(a) = self.windows.first_to_expire() {
            self.windows.remove(&a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    fn id(n: u64) -> MessageId {
        (origin(9000), n)
    }

    #[test]
    fn a_message_is_new_only_once() {
        let mut seen = SeenCache::new(1000, 10);
        assert!(seen.first_sight(id(1), 0, 0));
        assert!(!seen.first_sight(id(1), 0, 5));
        assert!(seen.first_sight(id(2), 0, 5));
        assert!(!seen.first_sight(id(2), 0, 6));
    }

    #[test]
    fn messages_arriving_out_of_order_are_each_new_once() {
        let mut seen = SeenCache::new(10_000, 10);
        for seq in [5, 3, 9, 1, 2, 4, 8, 6, 7] {
            assert!(seen.first_sight(id(seq), 0, 1), "seq {seq}");
        }
        for seq in 1..=9 {
            assert!(!seen.first_sight(id(seq), 0, 2), "seq {seq} again");
        }
    }

    #[test]
    fn a_long_run_of_messages_slides_the_window_without_readmitting_any() {
        let mut seen = SeenCache::new(1_000_000, 10);
        for seq in 1..=1_000 {
            assert!(seen.first_sight(id(seq), seq, seq));
        }
        for seq in 1..=1_000 {
            assert!(!seen.first_sight(id(seq), seq, 1_001), "seq {seq} again");
        }
        assert_eq!(
            seen.len(),
            1,
            "one window per origin, not one entry per message"
        );
    }

    #[test]
    fn windows_expire_after_ttl_and_old_messages_stay_seen() {
        let mut seen = SeenCache::new(100, 10);
        assert!(seen.first_sight(id(1), 0, 0));
        assert!(
            !seen.first_sight(id(1), 0, 500),
            "too old by its own timestamp"
        );
        assert!(seen.first_sight(id(2), 500, 500));
        assert_eq!(seen.len(), 1, "the first window expired and was swept");
    }

    #[test]
    fn a_message_stamped_in_the_future_is_not_new_again_after_expiry() {
        let mut seen = SeenCache::new(100, 10);
        assert!(seen.first_sight(id(1), 1_000, 0));
        assert!(!seen.first_sight(id(1), 1_000, 150));
        assert!(!seen.first_sight(id(1), 1_000, 1_050));
    }

    #[test]
    fn a_restarted_origin_is_a_new_incarnation() {
        let mut seen = SeenCache::new(100_000, 10);
        assert!(seen.first_sight(id(1), 1_000, 1_000));
        assert!(seen.first_sight(id(2), 2_000, 2_000));
        // Restarted at 5_000: numbers from 1 again, with newer stamps.
        assert!(seen.first_sight(id(1), 5_000, 5_000));
        assert!(!seen.first_sight(id(1), 5_000, 5_001));
        assert!(
            !seen.first_sight(id(2), 2_000, 5_002),
            "the old incarnation's message 2"
        );
        assert!(seen.first_sight(id(2), 6_000, 6_000));
    }

    #[test]
    fn capacity_bounds_the_origins_tracked() {
        let mut seen = SeenCache::new(1_000_000, 3);
        for n in 0..10 {
            assert!(seen.first_sight((origin(n), 1), u64::from(n), u64::from(n)));
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.first_sight((origin(9), 1), 9, 20));
    }

    #[test]
    fn ipv6_origins_are_tracked_beside_ipv4_ones() {
        let mut seen = SeenCache::new(1_000, 2);
        let v6: SocketAddr = "[::1]:9000".parse().unwrap_or(origin(1));
        assert!(seen.first_sight((v6, 1), 0, 0));
        assert!(seen.first_sight(id(1), 1, 1));
        assert!(!seen.first_sight((v6, 1), 0, 2) && !seen.first_sight(id(1), 1, 2));
        assert!(
            seen.first_sight((origin(7), 1), 3, 3),
            "the first to expire makes room"
        );
        assert_eq!(seen.len(), 2);
        assert!(
            seen.first_sight((v6, 1), 0, 4),
            "the IPv6 window went first"
        );
    }

    #[test]
    fn is_new_does_not_record() {
        let seen = SeenCache::new(1000, 10);
        assert!(seen.is_new(id(1), 0, 0));
        assert!(seen.is_new(id(1), 0, 0));
    }
}
