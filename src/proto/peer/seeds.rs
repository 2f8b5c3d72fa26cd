//! The peer's side of the seeds: choosing a majority, registering, retrying with
//! backoff, refreshing the peer list.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use std::net::SocketAddr;

use super::addrs::{merge_sorted, sorted_distinct, AddrSet};
use super::{ConnRole, PeerConn, PeerCore, SeedState};
use crate::proto::{ConnId, Event, Link, Message, Millis, Timer};

impl PeerCore {
    pub(super) fn connect_seed(&mut self, i: usize, now: Millis) {
        let (Some(seed), Ok(index)) = (self.seeds.get_mut(i), u32::try_from(i)) else {
            return;
        };
        let conn = self.out.connect(seed.addr);
        seed.state = SeedState::Pending;
        seed.conn = Some(conn);
        seed.asked_at = None;
        let link = Link::new(seed.addr, now);
        let role = ConnRole::Seed(index);
        self.conns.insert(conn, PeerConn { role, link });
    }

    /// Sends `register` to seed `i` on its connection `conn`.
    pub(super) fn ask_seed(&mut self, i: usize, conn: ConnId, now: Millis) {
        if let Some(seed) = self.seeds.get_mut(i) {
            seed.asked_at = Some(now);
        }
        let register = Message::Register {
            addr: self.cfg.addr,
        };
        self.out.send_msg(conn, register);
    }

    /// Asks again the seeds that got `register` at least one liveness interval ago and
    /// have not answered: a lost `peer_list` must not leave the peer waiting for good (the
    /// seed's own liveness checks keep the connection from going idle).
    pub(super) fn ask_pending_seeds_again(&mut self, now: Millis) {
        let interval = self.cfg.liveness_interval;
        let stale: Vec<(usize, ConnId)> = (self.seeds.iter().enumerate())
            .filter(|(_, s)| s.state == SeedState::Pending)
            .filter(|(_, s)| {
                s.asked_at
                    .is_some_and(|t| now.saturating_sub(t) >= interval)
            })
            .filter_map(|(i, s)| Some((i, s.conn?)))
            .collect();
        for (i, conn) in stale {
            self.ask_seed(i, conn, now);
        }
    }

    pub(super) fn registered_count(&self) -> usize {
        self.registered_seeds().count()
    }

    pub(super) fn has_majority(&self) -> bool {
        self.registered_count() >= self.majority()
    }

    pub(super) fn on_peer_list(&mut self, i: usize, peers: Vec<SocketAddr>, now: Millis) {
        let Some(seed) = self.seeds.get_mut(i) else {
            return;
        };
        seed.state = SeedState::Registered;
        seed.backoff = self.cfg.seed_retry_min;
        seed.was_registered = true;
        let from = seed.addr;
        if self.merge_candidates(&peers) {
            self.refresh_backoff = 1;
        }
        self.out.log(Event::PeerListReceived { from, peers });
        self.top_up_neighbors(now);
    }

    /// Adds `peers` to the candidates, keeping a uniform random `max_candidates` of the
    /// union. True when a new candidate came in.
    // The union is built as a sorted Vec (the set's own order) rather than by inserting
    // into the set: the shuffle sees the same sequence and draws the same sample, at a
    // fraction of the cost when every peer list brings hundreds of addresses.
    pub(super) fn merge_candidates(&mut self, peers: &[SocketAddr]) -> bool {
        let me = self.cfg.addr;
        if let Some(all) = self.candidates.union_v4(peers, &me) {
            return self.keep_candidates(all, |set, k| set.contains_v4(*k), AddrSet::from_v4_keys);
        }
        let incoming = sorted_distinct(peers.iter().copied().filter(|p| *p != me));
        let all = merge_sorted(self.candidates.iter(), incoming);
        self.keep_candidates(all, AddrSet::contains, AddrSet::from_sorted)
    }

    /// Makes `all`, the sorted union, the candidates, or a uniform random
    /// `max_candidates` of it; true when a new candidate came in. `all` holds addresses,
    /// or IPv4 keys when every address is IPv4: a shuffle's draws depend on the length
    /// alone, so both draw the same sample.
    fn keep_candidates<T: Ord>(
        &mut self,
        mut all: Vec<T>,
        has: impl Fn(&AddrSet, &T) -> bool,
        set: impl Fn(Vec<T>) -> AddrSet,
    ) -> bool {
        let grew = all.len() > self.candidates.len();
        if all.len() <= self.cfg.max_candidates {
            if grew {
                self.candidates = set(all);
            }
            return grew;
        }
        all.shuffle(&mut self.rng);
        all.truncate(self.cfg.max_candidates);
        let new = all.iter().any(|c| !has(&self.candidates, c));
        all.sort_unstable();
        self.candidates = set(all);
        new
    }

    /// A seed connection failed or ended: back off and retry while it is needed. `quiet`:
    /// the cause was already logged as a warning.
    pub(super) fn seed_lost(&mut self, i: usize, error: String, quiet: bool, now: Millis) {
        let Some(seed) = self.seeds.get_mut(i) else {
            return;
        };
        seed.conn = None;
        seed.state = SeedState::Idle;
        let needed = !self.has_majority();
        let Some(seed) = self.seeds.get_mut(i) else {
            return;
        };
        if !needed && !seed.was_registered {
            return;
        }
        let jitter = self.rng.random_range(0..=seed.backoff / 4);
        let retry_ms = seed.backoff + jitter;
        seed.state = SeedState::Backoff {
            retry_at: now + retry_ms,
        };
        seed.backoff = (seed.backoff * 2).min(self.cfg.seed_retry_max);
        let seed = seed.addr;
        if !quiet {
            self.out.log(Event::SeedUnreachable {
                seed,
                error,
                retry_ms,
            });
        }
        if needed {
            self.try_spare_seed(now);
        }
        self.arm_seed_retry();
    }

    /// Contacts a seed never tried so far, if the majority still lacks answers.
    pub(super) fn try_spare_seed(&mut self, now: Millis) {
        let in_flight = self
            .seeds
            .iter()
            .filter(|s| matches!(s.state, SeedState::Pending | SeedState::Registered))
            .count();
        if in_flight >= self.majority() {
            return;
        }
        let spares: Vec<usize> = (0..self.seeds.len())
            .filter(|&i| {
                self.seeds
                    .get(i)
                    .is_some_and(|s| s.state == SeedState::Idle)
            })
            .collect();
        if let Some(&i) = spares.choose(&mut self.rng) {
            self.connect_seed(i, now);
        }
    }

    pub(super) fn arm_seed_retry(&mut self) {
        let next = self
            .seeds
            .iter()
            .filter_map(|s| match s.state {
                SeedState::Backoff { retry_at } => Some(retry_at),
                _ => None,
            })
            .min();
        if let Some(at) = next {
            if self.seed_retry_due.is_none_or(|due| at < due) {
                self.seed_retry_due = Some(at);
                self.out.timer(at, Timer::SeedRetry);
            }
        }
    }

    pub(super) fn retry_seeds(&mut self, now: Millis) {
        self.seed_retry_due = None;
        let needed = !self.has_majority();
        for i in 0..self.seeds.len() {
            let Some(seed) = self.seeds.get_mut(i) else {
                continue;
            };
            if let SeedState::Backoff { retry_at } = seed.state {
                if retry_at <= now && (needed || seed.was_registered) {
                    self.connect_seed(i, now);
                } else if retry_at <= now {
                    seed.state = SeedState::Idle;
                }
            }
        }
        self.arm_seed_retry();
    }

    /// Asks one registered seed for a fresh peer list (registering again is idempotent).
    /// Runs while the peer has fewer than `max_neighbors` neighbours and no candidate left.
    pub(super) fn refresh_peer_list(&mut self) {
        let conns = self.registered_seed_conns();
        if let Some(&conn) = conns.choose(&mut self.rng) {
            let register = Message::Register {
                addr: self.cfg.addr,
            };
            self.out.send_msg(conn, register);
        }
    }

    /// The open connections to seeds that have this peer on their list.
    pub(super) fn registered_seed_conns(&self) -> Vec<ConnId> {
        self.seeds
            .iter()
            .filter(|s| s.state == SeedState::Registered)
            .filter_map(|s| s.conn)
            .collect()
    }
}
