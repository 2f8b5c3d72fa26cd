//! The Message List: which gossip messages this peer has already seen.
//!
//! Bounded in time (an entry expires `ttl` after it was recorded) and in size (past
//! `capacity` the oldest entry goes first). A message older than `ttl` by its own
//! timestamp is treated as seen, so an expired entry can never let it circulate again.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

use super::Millis;

/// A message's identity: (origin, seq).
pub type MessageId = (SocketAddr, u64);

/// The seen-cache.
#[derive(Debug)]
pub struct SeenCache {
    ttl: Millis,
    capacity: usize,
    ids: HashSet<MessageId>,
    /// (expiry, id) in insertion order. Expiries are nearly sorted (a future-stamped entry
    /// may wait behind an earlier one), which only delays its removal.
    order: VecDeque<(Millis, MessageId)>,
}

impl SeenCache {
    pub fn new(ttl: Millis, capacity: usize) -> Self {
        SeenCache {
            ttl,
            capacity: capacity.max(1),
            ids: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `id` if it is new and fresh; true when the message is seen for the first time.
    pub fn first_sight(&mut self, id: MessageId, created_ts: Millis, now: Millis) -> bool {
        self.expire(now);
        if created_ts.saturating_add(self.ttl) < now || self.ids.contains(&id) {
            return false;
        }
        if self.ids.len() >= self.capacity {
            self.evict_oldest();
        }
        self.ids.insert(id);
        // A message stamped ahead of our clock stays until it is `ttl` old by its own stamp,
        // so the staleness check above covers it once its entry expires.
        let expiry = now.max(created_ts).saturating_add(self.ttl);
        self.order.push_back((expiry, id));
        true
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn expire(&mut self, now: Millis) {
        while self.order.front().is_some_and(|(exp, _)| *exp <= now) {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MessageId {
        ("127.0.0.1:9000".parse().unwrap(), n)
    }

    #[test]
    fn a_message_is_new_only_once() {
        let mut seen = SeenCache::new(1000, 10);
        assert!(seen.first_sight(id(1), 0, 0));
        assert!(!seen.first_sight(id(1), 0, 5));
        assert!(seen.first_sight(id(2), 0, 5));
    }

    #[test]
    fn entries_expire_after_ttl() {
        let mut seen = SeenCache::new(100, 10);
        seen.first_sight(id(1), 0, 0);
        seen.first_sight(id(2), 50, 50);
        assert!(
            !seen.first_sight(id(3), 0, 101),
            "too old by its own timestamp"
        );
        assert_eq!(seen.len(), 1, "id 1 expired, id 2 still held");
    }

    #[test]
    fn a_message_older_than_ttl_is_never_new_again() {
        let mut seen = SeenCache::new(100, 10);
        assert!(seen.first_sight(id(1), 0, 0));
        assert!(!seen.first_sight(id(1), 0, 500));
    }

    #[test]
    fn a_message_stamped_in_the_future_is_not_new_again_after_expiry() {
        let mut seen = SeenCache::new(100, 10);
        assert!(seen.first_sight(id(1), 1_000, 0));
        assert!(!seen.first_sight(id(1), 1_000, 150));
        assert!(!seen.first_sight(id(1), 1_000, 1_050));
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let mut seen = SeenCache::new(1_000_000, 3);
        for n in 0..10 {
            assert!(seen.first_sight(id(n), 0, n));
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.first_sight(id(9), 0, 20));
    }
}
