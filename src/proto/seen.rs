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

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, SocketAddrV4};

use super::table::{Inline, Table};
use super::Millis;
use crate::hint;

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
/// integer. The first [`FEW`] of them sit in a small table whose keys are kept in the
/// cache itself: the duplicate check, which a large swarm or simulation runs tens of
/// millions of times, then reads no hash table (for a peer hearing from ten origins, a
/// hash and two cache misses less a frame). Origins past those go to hash maps, still
/// SipHash with a random key, as origins come from the network.
#[derive(Debug, Default)]
struct Windows {
    few: Table<u64, Window, Inline<u64, FEW>>,
    v4: HashMap<u64, Window>,
    v6: HashMap<SocketAddr, Window>,
    /// Every window by (expiry, origin), kept while there are many: finding the window
    /// that expires first is then a lookup instead of a scan of them all, which a stream
    /// of new origins past the capacity would make once per frame. None while there are
    /// few, so the usual handful of origins costs nothing more.
    by_expiry: Option<BTreeSet<(Millis, SocketAddr)>>,
}

/// IPv4 origins kept in the small table.
const FEW: usize = 12;

/// From this many windows on, they are indexed by expiry; below half of it, not.
const INDEX_FROM: usize = 1024;

fn v4_key(a: &SocketAddrV4) -> u64 {
    (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())
}

fn from_v4_key(k: u64) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::from_bits((k >> 16) as u32), k as u16))
}

impl Windows {
    fn get(&self, origin: &SocketAddr) -> Option<&Window> {
        match origin {
            SocketAddr::V4(a) => {
                let k = v4_key(a);
                self.few.get(&k).or_else(|| self.v4.get(&k))
            }
            SocketAddr::V6(_) => self.v6.get(origin),
        }
    }

    fn get_mut(&mut self, origin: &SocketAddr) -> Option<&mut Window> {
        match origin {
            SocketAddr::V4(a) => {
                let k = v4_key(a);
                match self.few.get_mut(&k) {
                    Some(w) => Some(w),
                    None => self.v4.get_mut(&k),
                }
            }
            SocketAddr::V6(_) => self.v6.get_mut(origin),
        }
    }

    /// Puts `w` under the IPv4 key `k`: where it is already, else in the small table
    /// while it has room; the window it replaces, if any.
    fn insert_v4(&mut self, k: u64, w: Window) -> Option<Window> {
        if self.few.contains_key(&k) || (self.few.len() < FEW && !self.v4.contains_key(&k)) {
            return self.few.insert(k, w);
        }
        self.v4.insert(k, w)
    }

    /// `origin`'s window now expires at `after` instead of `before`.
    fn moved(&mut self, origin: &SocketAddr, before: Millis, after: Millis) {
        if let Some(index) = self.by_expiry.as_mut().filter(|_| after != before) {
            index.remove(&(before, *origin));
            index.insert((after, *origin));
        }
    }

    fn insert(&mut self, origin: SocketAddr, w: Window) {
        let old = match origin {
            SocketAddr::V4(a) => self.insert_v4(v4_key(&a), w),
            SocketAddr::V6(_) => self.v6.insert(origin, w),
        };
        if let Some(index) = self.by_expiry.as_mut() {
            if let Some(old) = old {
                index.remove(&(old.expires, origin));
            }
            index.insert((w.expires, origin));
        } else if self.len() >= INDEX_FROM {
            self.by_expiry = Some(self.entries().collect());
        }
    }

    fn remove(&mut self, origin: &SocketAddr) {
        let old = match origin {
            SocketAddr::V4(a) => {
                let k = v4_key(a);
                self.few.remove(&k).or_else(|| self.v4.remove(&k))
            }
            SocketAddr::V6(_) => self.v6.remove(origin),
        };
        if let (Some(index), Some(old)) = (self.by_expiry.as_mut(), old) {
            index.remove(&(old.expires, *origin));
        }
    }

    fn contains_key(&self, origin: &SocketAddr) -> bool {
        self.get(origin).is_some()
    }

    fn len(&self) -> usize {
        self.few.len() + self.v4.len() + self.v6.len()
    }

    /// Drops the windows expired at `now`.
    fn expire(&mut self, now: Millis) {
        self.few.retain(|_, w| w.expires > now);
        self.v4.retain(|_, w| w.expires > now);
        self.v6.retain(|_, w| w.expires > now);
        if self.len() < INDEX_FROM / 2 {
            self.by_expiry = None;
        } else if let Some(index) = self.by_expiry.as_mut() {
            *index = index.split_off(&(now.saturating_add(1), SocketAddr::from(([0, 0, 0, 0], 0))));
        }
    }

    /// (expiry, origin) of every window.
    fn entries(&self) -> impl Iterator<Item = (Millis, SocketAddr)> + '_ {
        let v4 = (self.few.iter().chain(&self.v4)).map(|(k, w)| (w.expires, from_v4_key(*k)));
        v4.chain(self.v6.iter().map(|(a, w)| (w.expires, *a)))
    }

    /// The origin whose window expires first.
    fn first_to_expire(&self) -> Option<SocketAddr> {
        if let Some(index) = &self.by_expiry {
            return index.first().map(|(_, a)| *a);
        }
        // Ties go to the lowest address, as in the index: not to the hash map's order.
        self.entries().min().map(|(_, a)| a)
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
    /// Cache hints for a check (see [`crate::hint`]): the settings and the small table.
    pub fn prefetch(&self) {
        hint::prefetch(&self.ttl);
        self.windows.few.prefetch();
    }

    /// Cache hint for `origin`'s window, when it is in the small table (once that table
    /// is in cache).
    pub fn prefetch_window(&self, origin: &SocketAddr) {
        if let SocketAddr::V4(a) = origin {
            self.windows.few.prefetch_value(&v4_key(a));
        }
    }

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
        let Some(w) = self.windows.get_mut(&origin).filter(|w| w.expires > now) else {
            self.make_room(&origin);
            self.windows
                .insert(origin, Window::new(seq, ts, 0, expires));
            return true;
        };
        let before = w.expires;
        if w.has(seq) {
            // Seen seq, newer stamp: the origin restarted.
            *w = Window::new(seq, ts, w.max_ts + 1, expires);
        } else {
            w.mark(seq);
            w.max_ts = w.max_ts.max(ts);
            w.expires = w.expires.max(expires);
        }
        let after = w.expires;
        self.windows.moved(&origin, before, after);
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
        self.windows.expire(now);
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

    fn v4_origin(n: u32) -> SocketAddr {
        SocketAddr::from((n.to_be_bytes(), 9000))
    }

    /// The index, when kept, holds exactly every window's (expiry, origin).
    fn assert_indexed(seen: &SeenCache) {
        let w = &seen.windows;
        let all: BTreeSet<(Millis, SocketAddr)> = w.entries().collect();
        match &w.by_expiry {
            Some(index) => assert_eq!(index, &all),
            None => assert!(all.len() < INDEX_FROM, "{} windows, no index", all.len()),
        }
    }

    #[test]
    fn past_the_capacity_new_origins_push_out_the_windows_that_expire_first() {
        let cap = 2 * INDEX_FROM;
        let mut seen = SeenCache::new(1_000_000, cap);
        for n in 0..cap as u32 {
            assert!(seen.first_sight((v4_origin(n), 1), u64::from(n), u64::from(n)));
        }
        assert!(
            seen.windows.by_expiry.is_some(),
            "indexed from INDEX_FROM on"
        );
        let at = cap as u64 + 10;
        for n in 0..500u32 {
            let origin = v4_origin(1_000_000 + n);
            assert!(seen.first_sight((origin, 1), at, at));
        }
        assert_eq!(seen.len(), cap);
        assert_indexed(&seen);
        let gone = (0..cap as u32).filter(|&n| !seen.windows.contains_key(&v4_origin(n)));
        assert!(
            gone.eq(0..500),
            "the 500 heard of longest ago went, in that order"
        );
    }

    #[test]
    fn origins_past_the_small_table_are_kept_as_well_and_expire_alike() {
        let mut seen = SeenCache::new(1_000, 100);
        let many = 3 * FEW as u32;
        for n in 0..many {
            assert!(seen.first_sight((v4_origin(n), 1), 0, u64::from(n % 2)));
        }
        assert_eq!((seen.windows.few.len(), seen.len()), (FEW, many as usize));
        for n in 0..many {
            assert!(!seen.first_sight((v4_origin(n), 1), 0, 2), "origin {n}");
            assert!(seen.first_sight((v4_origin(n), 2), 0, 2), "origin {n}");
        }
        let gone = v4_origin(FEW as u32 / 2);
        seen.windows.remove(&gone);
        assert!(!seen.windows.contains_key(&gone) && seen.windows.few.len() == FEW - 1);
        assert!(seen.first_sight((v4_origin(many), 1), 0, 3), "a new origin");
        assert_eq!(seen.windows.few.len(), FEW, "takes the free place");
        assert!(seen.first_sight(id(1), 2_000, 2_000));
        assert_eq!(seen.len(), 1, "the rest expired, in the table and the map");
        assert_indexed(&seen);
    }

    #[test]
    fn the_index_goes_when_few_windows_are_left() {
        let mut seen = SeenCache::new(1_000, 1_000_000);
        for n in 0..INDEX_FROM as u32 {
            seen.first_sight((v4_origin(n), 1), 0, 0);
        }
        assert!(seen.windows.by_expiry.is_some());
        seen.first_sight(id(1), 5_000, 5_000);
        assert_eq!(seen.len(), 1, "the rest expired and were swept");
        assert!(seen.windows.by_expiry.is_none());
        assert_indexed(&seen);
    }

    proptest::proptest! {
        #[test]
        fn the_index_follows_every_window(
            steps in proptest::collection::vec((0u32..3_000, 1u64..40, 0u64..3, 0u64..2), 1..4_000)
        ) {
            let mut seen = SeenCache::new(2_000, INDEX_FROM + 300);
            let mut now = 0;
            for (i, (origin, seq, age, gap)) in steps.into_iter().enumerate() {
                now += gap;
                seen.first_sight((v4_origin(origin), seq), now.saturating_sub(age * 100), now);
                if i % 97 == 0 {
                    assert_indexed(&seen);
                }
            }
            assert_indexed(&seen);
            proptest::prop_assert!(seen.len() <= INDEX_FROM + 300);
        }
    }
}
