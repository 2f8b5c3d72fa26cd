//! The seed state machine: keeps the peer list, answers registrations, drops dead peers.
//!
//! Pure: no sockets, no clock. A seed also checks the liveness of the peers registered
//! with it over their registration connections, so a peer that dies is dropped from every
//! seed's list even when no neighbour of it reported to this seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;

use super::seed_list::PeerList;
use super::{
    excused, idle_conns, recheck_after, sweep_period, Action, ConnId, Disconnect, Event, Link,
    Message, Millis, Outbox, Timer,
};

/// A seed's settings.
#[derive(Debug, Clone)]
pub struct SeedConfig {
    /// The seed's listening address.
    pub addr: SocketAddr,
    /// At most this many peers in one `peer_list` answer (a uniform sample past it).
    pub peer_list_max: usize,
    pub liveness_interval: Millis,
    pub liveness_misses: u32,
    /// A connection silent this long is closed.
    pub idle_timeout: Millis,
}

impl SeedConfig {
    pub fn new(addr: SocketAddr) -> Self {
        SeedConfig {
            addr,
            peer_list_max: 64,
            liveness_interval: 13_000,
            liveness_misses: 3,
            idle_timeout: 5 * 13_000,
        }
    }
}

/// A peer on the list.
#[derive(Debug)]
struct Registration {
    /// Position in `SeedCore::list`.
    index: usize,
    /// The connection it registered on, while open.
    conn: Option<ConnId>,
    awaiting_reply: bool,
    misses: u32,
    /// A dead-node report being checked: who reported it, and when the peer is removed
    /// unless it answers the seed's own liveness request first.
    suspect: Option<(SocketAddr, Millis)>,
}

#[derive(Debug)]
struct SeedConn {
    link: Link,
    /// The peer that registered on this connection.
    peer: Option<SocketAddr>,
}

/// The seed core.
#[derive(Debug)]
pub struct SeedCore {
    cfg: SeedConfig,
    rng: SmallRng,
    out: Outbox,
    /// The peer list, indexed so a uniform sample is cheap.
    list: PeerList,
    registered: HashMap<SocketAddr, Registration>,
    /// The registered peers with a dead-node report being checked, so that checking the
    /// reports visits them alone and not the whole list (a remote sending a report a
    /// millisecond would otherwise make the seed scan its list as often).
    suspects: BTreeSet<SocketAddr>,
    /// By the seed's own connection ids (not chosen by any remote, so hashed by a
    /// multiply): a seed holds a connection per registered peer, and a B-tree of a
    /// million of them costs several cache misses a lookup.
    conns: Conns,
    liveness_due: Millis,
    sweep_due: Millis,
    verify_due: Option<Millis>,
    /// The registered peers the last check excused while the loop was behind, judged
    /// again at `recheck_due`.
    deferred: Vec<SocketAddr>,
    recheck_due: Option<Millis>,
    /// Set by [`SeedCore::loop_behind`], taken by the next timer.
    behind: bool,
}

impl SeedCore {
    pub fn new(cfg: SeedConfig, rng_seed: u64) -> Self {
        SeedCore {
            cfg,
            rng: SmallRng::seed_from_u64(rng_seed),
            out: Outbox::default(),
            list: PeerList::default(),
            registered: HashMap::new(),
            suspects: BTreeSet::new(),
            conns: Conns::default(),
            liveness_due: 0,
            sweep_due: 0,
            verify_due: None,
            deferred: Vec::new(),
            recheck_due: None,
            behind: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.cfg.addr
    }

    /// The live peers this seed knows, in registration order (removals swap).
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.list.iter().collect()
    }

    /// How many connections, listed peers and registrations the core holds.
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> [usize; 3] {
        assert!(
            self.suspects.len() <= self.registered.len(),
            "suspects not registered"
        );
        [self.conns.len(), self.list.len(), self.registered.len()]
    }

    pub fn start(&mut self, now: Millis) {
        self.liveness_due = now + self.cfg.liveness_interval;
        self.out.timer(self.liveness_due, Timer::Liveness);
        self.sweep_due = now + sweep_period(self.cfg.idle_timeout);
        self.out.timer(self.sweep_due, Timer::IdleSweep);
    }

    pub fn accept(&mut self, remote: SocketAddr, now: Millis) -> ConnId {
        let conn = self.out.new_conn();
        let link = Link::new(remote, now);
        self.conns.insert(conn, SeedConn { link, peer: None });
        conn
    }

    /// Seeds never connect out, so this never happens; it is ignored.
    pub fn connected(&mut self, _conn: ConnId, _now: Millis) {}

    pub fn closed(&mut self, conn: ConnId, why: Disconnect, _now: Millis) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Disconnect::BadFrame(reason) = why {
            self.out.log(Event::BadFrame {
                remote: c.link.remote,
                reason,
            });
        }
        self.forget_conn(conn, c.peer);
    }

    /// Bytes from `conn`'s remote, come at `at`, wait unread: a sign of life, as a reply
    /// would be.
    pub fn input_waiting(&mut self, conn: ConnId, at: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.link.last_heard = c.link.last_heard.max(at);
        self.on_liveness_reply(conn);
    }

    /// See [`crate::proto::Node::arrived`].
    pub fn arrived(&mut self, conn: ConnId, at: Millis) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.link.last_heard = at;
        }
    }

    pub fn message(&mut self, conn: ConnId, msg: Message, now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.link.last_heard = now;
        match msg {
            Message::Register { addr } => self.on_register(conn, addr),
            Message::DeadNode { addr, ts, reporter } => self.on_dead_node(addr, ts, reporter, now),
            Message::LivenessReply { .. } => self.on_liveness_reply(conn),
            Message::LivenessRequest { ts, from } => {
                let reply = Message::LivenessReply {
                    ts,
                    from,
                    to: self.cfg.addr,
                };
                self.out.send_msg(conn, reply);
            }
            other => self.protocol_error(conn, format!("unexpected {} frame", other.kind())),
        }
    }

    /// See [`crate::proto::Node::loop_behind`].
    pub fn loop_behind(&mut self) {
        self.behind = true;
    }

    pub fn timer(&mut self, timer: Timer, now: Millis) {
        let behind = std::mem::take(&mut self.behind);
        match timer {
            Timer::Liveness if now >= self.liveness_due => self.check_liveness(now, behind),
            Timer::IdleSweep if now >= self.sweep_due => self.sweep_idle(now, behind),
            Timer::Verify if self.verify_due.is_some_and(|due| now >= due) => {
                self.verify_reports(now, behind)
            }
            Timer::Recheck if self.recheck_due.is_some_and(|due| now >= due) => {
                self.recheck_liveness(now, behind)
            }
            _ => {}
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop()
    }

    /// A connection registers one address (again and again, to get a fresh list): a
    /// remote registering others on it would grow the list by one fake peer a frame.
    fn on_register(&mut self, conn: ConnId, addr: SocketAddr) {
        let earlier = self.conns.get(&conn).and_then(|c| c.peer);
        if let Some(earlier) = earlier.filter(|e| *e != addr) {
            let reason = format!("register as {addr} on the connection that registered {earlier}");
            return self.protocol_error(conn, reason);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(addr);
        }
        let index = if let Some(reg) = self.registered.get_mut(&addr) {
            // Registering again (a restart or a new connection): same entry, fresh state.
            reg.conn = Some(conn);
            reg.awaiting_reply = false;
            reg.misses = 0;
            reg.index
        } else {
            let index = self.list.len();
            self.registered.insert(
                addr,
                Registration {
                    index,
                    conn: Some(conn),
                    awaiting_reply: false,
                    misses: 0,
                    suspect: None,
                },
            );
            self.list.push(addr);
            self.out.log(Event::PeerRegistered { peer: addr });
            index
        };
        let peers = self.peer_list_for(addr, index);
        self.out.send_msg(conn, Message::PeerList { peers });
    }

    /// Every live peer but `asker` (entry `skip` of the list), or a uniform sample of
    /// `peer_list_max` of them.
    fn peer_list_for(&mut self, asker: SocketAddr, skip: usize) -> Vec<SocketAddr> {
        let max = self.cfg.peer_list_max;
        let others = self.list.len().saturating_sub(1);
        if others <= max {
            return self.list.iter().filter(|p| *p != asker).collect();
        }
        let picks = sample_except(&mut self.rng, self.list.len(), Some(skip), max);
        let mut peers = Vec::with_capacity(picks.len());
        let found = picks.into_iter().filter_map(|i| self.list.get(i));
        peers.extend(found.filter(|p| *p != asker));
        peers
    }

    /// A report alone never evicts a live peer: unless the seed's own checks already
    /// missed it (or its registration connection is gone), the seed asks the peer itself
    /// and removes it only if no answer comes within one liveness interval.
    fn on_dead_node(
        &mut self,
        addr: SocketAddr,
        report_ts: Millis,
        reporter: SocketAddr,
        now: Millis,
    ) {
        self.out.log(Event::DeadNodeReceived {
            addr,
            reporter,
            report_ts,
        });
        let Some(reg) = self.registered.get_mut(&addr) else {
            return;
        };
        let conn = match reg.conn {
            Some(conn) if reg.misses == 0 => conn,
            _ => {
                let reason = format!("reported dead by {reporter}, and missing here too");
                return self.remove(addr, reason);
            }
        };
        if reg.suspect.is_some() {
            return;
        }
        let deadline = now + self.cfg.liveness_interval;
        reg.suspect = Some((reporter, deadline));
        reg.awaiting_reply = true;
        self.suspects.insert(addr);
        let probe = Message::LivenessRequest {
            ts: now,
            from: self.cfg.addr,
        };
        self.out.send_msg(conn, probe);
        if self.verify_due.is_none_or(|due| deadline < due) {
            self.verify_due = Some(deadline);
            self.out.timer(deadline, Timer::Verify);
        }
    }

    fn on_liveness_reply(&mut self, conn: ConnId) {
        let peer = self.conns.get(&conn).and_then(|c| c.peer);
        let Some((addr, reg)) = peer.and_then(|p| self.registered.get_mut(&p).map(|r| (p, r)))
        else {
            return;
        };
        if reg.conn != Some(conn) {
            return;
        }
        reg.awaiting_reply = false;
        reg.misses = 0;
        if let Some((reporter, _)) = reg.suspect.take() {
            self.suspects.remove(&addr);
            self.out.log(Event::DeadNodeRefuted { addr, reporter });
        }
    }

    /// Removes the reported peers that did not answer the seed's check in time. While the
    /// loop is `behind`, one heard from recently gets another quarter interval to answer.
    fn verify_reports(&mut self, now: Millis, behind: bool) {
        self.verify_due = None;
        let mut unanswered = Vec::new();
        let mut next: Option<Millis> = None;
        for addr in &self.suspects {
            let Some(reg) = self.registered.get_mut(addr) else {
                continue;
            };
            let Some((reporter, deadline)) = reg.suspect else {
                continue;
            };
            let mut deadline = deadline;
            if deadline <= now && behind && heard_lately(&self.conns, reg, now, &self.cfg) {
                deadline = now + recheck_after(self.cfg.liveness_interval);
                reg.suspect = Some((reporter, deadline));
            }
            if deadline <= now {
                unanswered.push((*addr, reporter));
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        for (addr, reporter) in unanswered {
            let reason =
                format!("reported dead by {reporter}, and did not answer the seed's check");
            self.remove(addr, reason);
        }
        if let Some(at) = next {
            self.verify_due = Some(at);
            self.out.timer(at, Timer::Verify);
        }
    }

    /// Drops `addr` from the peer list (idempotent).
    fn remove(&mut self, addr: SocketAddr, reason: String) {
        let Some(reg) = self.registered.remove(&addr) else {
            return;
        };
        self.suspects.remove(&addr);
        self.list.swap_remove(reg.index);
        if let Some(moved) = self.list.get(reg.index) {
            if let Some(m) = self.registered.get_mut(&moved) {
                m.index = reg.index;
            }
        }
        self.out.log(Event::PeerRemoved { addr, reason });
    }

    /// Counts a miss for each peer that did not answer the last check, removes one at the
    /// limit, asks the rest. While the loop is `behind`, one heard from recently is
    /// excused: its request stays pending and it is judged again at the recheck.
    fn check_liveness(&mut self, now: Millis, behind: bool) {
        self.liveness_due = now + self.cfg.liveness_interval;
        self.out.timer(self.liveness_due, Timer::Liveness);
        self.deferred.clear();
        let mut dead = Vec::new();
        for addr in self.list.iter() {
            let Some(reg) = self.registered.get_mut(&addr) else {
                continue;
            };
            let missed = reg.awaiting_reply || reg.conn.is_none();
            if missed && behind && heard_lately(&self.conns, reg, now, &self.cfg) {
                self.deferred.push(addr);
                continue;
            }
            if missed && count_miss(&mut self.out, addr, reg, self.cfg.liveness_misses) {
                dead.push(addr);
                continue;
            }
            ask(&mut self.out, reg, self.cfg.addr, now);
        }
        self.remove_missing(dead);
        self.arm_recheck(now);
    }

    /// Judges again the peers the last check excused: once the loop has caught up (or
    /// their silence grew too long to excuse), an unanswered request is a miss.
    fn recheck_liveness(&mut self, now: Millis, behind: bool) {
        self.recheck_due = None;
        let (mut dead, mut still) = (Vec::new(), Vec::new());
        for addr in std::mem::take(&mut self.deferred) {
            let Some(reg) = self.registered.get_mut(&addr) else {
                continue;
            };
            if !(reg.awaiting_reply || reg.conn.is_none()) {
                continue;
            }
            if behind && heard_lately(&self.conns, reg, now, &self.cfg) {
                still.push(addr);
            } else if count_miss(&mut self.out, addr, reg, self.cfg.liveness_misses) {
                dead.push(addr);
            } else {
                ask(&mut self.out, reg, self.cfg.addr, now);
            }
        }
        self.remove_missing(dead);
        self.deferred = still;
        self.arm_recheck(now);
    }

    fn remove_missing(&mut self, dead: Vec<SocketAddr>) {
        for addr in dead {
            let misses = self.cfg.liveness_misses;
            self.remove(addr, format!("missed {misses} liveness checks"));
        }
    }

    /// Sets the recheck of the deferred peers a quarter interval on, unless the next
    /// check comes first.
    fn arm_recheck(&mut self, now: Millis) {
        let at = now + recheck_after(self.cfg.liveness_interval);
        if !self.deferred.is_empty() && at < self.liveness_due {
            self.recheck_due = Some(at);
            self.out.timer(at, Timer::Recheck);
        }
    }

    /// Closes connections silent for the idle timeout; none while the loop is behind.
    fn sweep_idle(&mut self, now: Millis, behind: bool) {
        self.sweep_due = now + sweep_period(self.cfg.idle_timeout);
        self.out.timer(self.sweep_due, Timer::IdleSweep);
        if behind {
            return;
        }
        let timeout = self.cfg.idle_timeout;
        let links = self.conns.iter().map(|(id, c)| (id, &c.link));
        let mut idle = idle_conns(links, now, timeout);
        idle.sort_unstable();
        for conn in idle {
            self.protocol_error(conn, format!("no frame for {timeout} ms"));
        }
    }

    /// Logs a warning naming the remote, closes the connection, keeps the node running.
    fn protocol_error(&mut self, conn: ConnId, reason: String) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.out.log(Event::BadFrame {
            remote: c.link.remote,
            reason,
        });
        self.out.close(conn);
        self.forget_conn(conn, c.peer);
    }

    /// The registration keeps its place on the list; liveness decides whether it stays.
    fn forget_conn(&mut self, conn: ConnId, peer: Option<SocketAddr>) {
        if let Some(reg) = peer.and_then(|p| self.registered.get_mut(&p)) {
            if reg.conn == Some(conn) {
                reg.conn = None;
            }
        }
    }
}

/// Counts a miss of `reg`'s peer and logs it; true when it reached the limit.
fn count_miss(out: &mut Outbox, addr: SocketAddr, reg: &mut Registration, limit: u32) -> bool {
    reg.misses += 1;
    out.log(Event::LivenessMiss {
        addr,
        misses: reg.misses,
    });
    reg.misses >= limit
}

/// Sends `reg`'s peer a liveness request on its registration connection, if open.
fn ask(out: &mut Outbox, reg: &mut Registration, from: SocketAddr, now: Millis) {
    if let Some(conn) = reg.conn {
        out.send_msg(conn, Message::LivenessRequest { ts: now, from });
        reg.awaiting_reply = true;
    }
}

/// Whether a registered peer's connection carried a frame (or unread input) lately enough
/// to be excused while the loop is behind.
fn heard_lately(conns: &Conns, reg: &Registration, now: Millis, cfg: &SeedConfig) -> bool {
    let heard = reg
        .conn
        .and_then(|c| conns.get(&c))
        .map(|c| c.link.last_heard);
    heard.is_some_and(|h| excused(h, now, cfg.liveness_interval))
}

/// `amount` distinct indices drawn uniformly from `0..length` without `skip`. A seed
/// with a million peers answers every registration with such a sample: there, drawing
/// with replacement and drawing again on a repeat (about one sample of 64 in 500 has one)
/// costs `amount` draws and a bit test each, where rand's Floyd sampling compares every
/// draw with every earlier one. Dense samples (more than an eighth of the range) go to
/// [`sample_indices`].
fn sample_except(
    rng: &mut SmallRng,
    length: usize,
    skip: Option<usize>,
    amount: usize,
) -> Vec<usize> {
    let range = length - usize::from(skip.is_some_and(|s| s < length));
    let amount = amount.min(range);
    let mut picks = if amount.saturating_mul(8) > range {
        sample_indices(rng, range, amount)
    } else {
        sparse_sample(rng, range, amount)
    };
    if let Some(skip) = skip {
        // Indices from `skip` on name the entry one further along.
        for i in picks.iter_mut().filter(|i| **i >= skip) {
            *i += 1;
        }
    }
    picks
}

/// `amount` distinct indices below `range`, for `amount` far below `range`: a 1,024-bit
/// filter on the low bits of each draw rules out a repeat without a search, except on
/// the few draws that share bits with an earlier one.
fn sparse_sample(rng: &mut SmallRng, range: usize, amount: usize) -> Vec<usize> {
    let mut picks: Vec<usize> = Vec::with_capacity(amount);
    let mut filter = [0u64; 16];
    while picks.len() < amount {
        let i = rng.random_range(0..range);
        let Some(word) = filter.get_mut((i >> 6) & 15) else {
            continue;
        };
        let bit = 1u64 << (i & 63);
        if *word & bit != 0 && picks.contains(&i) {
            continue;
        }
        *word |= bit;
        picks.push(i);
    }
    picks
}

/// `rand::seq::index::sample(rng, length, amount)`, the same indices from the same draws,
/// without its cost of O(length) for mid-sized lists: there rand 0.9 shuffles a full
/// `Vec` of `length` indices (a fresh, page-faulted allocation per registration once a
/// seed has thousands of peers); here the few positions the partial shuffle touches are
/// kept in a map. Other sizes go to rand itself.
fn sample_indices(rng: &mut SmallRng, length: usize, amount: usize) -> Vec<usize> {
    let (Ok(len), Ok(amt)) = (u32::try_from(length), u32::try_from(amount)) else {
        return rand::seq::index::sample(rng, length, amount).into_vec();
    };
    if amt > len || !rand_shuffles_in_place(len, amt) {
        return rand::seq::index::sample(rng, length, amount).into_vec();
    }
    // Positions below `amount` are each swapped once, in order: a dense array. Those
    // above are few (at most `amount`) and scattered: a map.
    let mut low: Vec<u32> = (0..amt).collect();
    let mut high: HashMap<u32, u32, BuildHasherDefault<IndexHasher>> =
        HashMap::with_capacity_and_hasher(amount, BuildHasherDefault::default());
    for i in 0..amt {
        let j: u32 = rng.random_range(i..len);
        let at_i = low.get(i as usize).copied().unwrap_or(i);
        let at_j = match low.get_mut(j as usize) {
            Some(slot) => std::mem::replace(slot, at_i),
            None => high.insert(j, at_i).unwrap_or(j),
        };
        if let Some(slot) = low.get_mut(i as usize) {
            *slot = at_j;
        }
    }
    low.into_iter().map(|v| v as usize).collect()
}

type Conns = HashMap<ConnId, SeedConn, BuildHasherDefault<IndexHasher>>;

/// A hasher for small integer keys: one multiply, as the keys are not chosen by anyone.
#[derive(Default)]
struct IndexHasher(u64);

impl std::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Whether rand 0.9's `index::sample` takes its in-place path (its own thresholds).
fn rand_shuffles_in_place(length: u32, amount: u32) -> bool {
    let j = usize::from(length >= 500_000);
    if amount < 163 {
        const C: [[f32; 2]; 2] = [[1.6, 8.0 / 45.0], [10.0, 70.0 / 9.0]];
        let amount_fp = amount as f32;
        let m4 = C[0][j] * amount_fp;
        amount > 11 && (length as f32) < (C[1][j] + m4) * amount_fp
    } else {
        const C: [f32; 2] = [270.0, 330.0 / 9.0];
        (length as f32) < C[j] * (amount as f32)
    }
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    #[test]
    fn a_sample_except_one_is_distinct_in_range_and_never_the_skipped() {
        for (length, skip, amount) in [
            (1_000_000, Some(17), 64),
            (1_000, Some(999), 64),
            (100, Some(0), 64),
            (65, Some(30), 64),
            (200, None, 64),
            (5, None, 64),
        ] {
            let mut rng = SmallRng::seed_from_u64(7);
            let picks = sample_except(&mut rng, length, skip, amount);
            let range = length - usize::from(skip.is_some());
            assert_eq!(picks.len(), amount.min(range), "length {length}");
            let distinct: std::collections::BTreeSet<usize> = picks.iter().copied().collect();
            assert_eq!(distinct.len(), picks.len(), "distinct");
            assert!(picks.iter().all(|&i| i < length && Some(i) != skip));
        }
    }

    #[test]
    fn a_sparse_sample_is_uniform() {
        // 20,000 samples of 8 from 1,000 minus index 500: each other index is expected
        // 160.16 times; a count off by more than 6 standard deviations (about 76) fails.
        let (length, amount, rounds) = (1_000, 8, 20_000);
        let mut counts = vec![0u32; length];
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..rounds {
            for i in sample_except(&mut rng, length, Some(500), amount) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts[500], 0);
        let expected = f64::from(rounds * amount as u32) / (length - 1) as f64;
        for (i, &c) in counts.iter().enumerate().filter(|(i, _)| *i != 500) {
            assert!(
                (f64::from(c) - expected).abs() < 76.0,
                "index {i}: {c} draws"
            );
        }
    }

    #[test]
    fn the_sample_is_rands_own_for_every_size() {
        for (length, amount) in [
            (300, 257),
            (5_000, 257),
            (69_000, 257),
            (100_000, 257),
            (60, 20),
            (2_000, 20),
            (10, 10),
            (40, 5),
        ] {
            for seed in 0..3 {
                let mut a = SmallRng::seed_from_u64(seed);
                let mut b = SmallRng::seed_from_u64(seed);
                let ours = sample_indices(&mut a, length, amount);
                let theirs = rand::seq::index::sample(&mut b, length, amount).into_vec();
                assert_eq!(
                    ours, theirs,
                    "length {length}, amount {amount}, seed {seed}"
                );
                assert_eq!(a.random::<u64>(), b.random::<u64>(), "same draws consumed");
            }
        }
    }
}

#[cfg(test)]
#[path = "seed_tests.rs"]
mod tests;
