//! The peer state machine: registers with a majority of seeds, keeps a few neighbours,
//! creates and forwards gossip exactly once, checks its neighbours' liveness and reports
//! dead ones to its seeds.
//!
//! Pure: no sockets, no clock, and randomness only from the RNG seeded at construction.

use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use std::collections::{BTreeSet, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

mod addrs;
mod catch_up;
mod liveness;
mod seeds;

use addrs::AddrSet;
use catch_up::Relayed;

use super::message::gossip_text;
use super::seen::SeenCache;
use super::table::{Inline, Table};
use super::{
    idle_conns, sweep_period, Action, ConnId, Disconnect, Event, Gossip, GossipId, Link, Message,
    Millis, Outbox, Timer,
};
use crate::hint;

/// A peer's settings.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's listening address: its name in the network.
    pub addr: SocketAddr,
    /// Every seed from the config file.
    pub seeds: Vec<SocketAddr>,
    /// How many peers to connect to (incoming connections come on top).
    pub max_neighbors: usize,
    pub gossip_interval: Millis,
    /// How many gossip messages to create in all.
    pub messages: u64,
    /// The first message is created no earlier than this long after `start` (and one
    /// gossip interval after the first neighbour connects).
    pub gossip_delay: Millis,
    pub liveness_interval: Millis,
    pub liveness_misses: u32,
    /// A connection silent this long (or a connect pending this long) is closed.
    pub idle_timeout: Millis,
    /// How long a seen message is remembered.
    pub seen_ttl: Millis,
    pub seen_capacity: usize,
    pub seed_retry_min: Millis,
    pub seed_retry_max: Millis,
    /// At most this many candidate peers are kept from the seeds' lists.
    pub max_candidates: usize,
}

impl PeerConfig {
    pub fn new(addr: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        PeerConfig {
            addr,
            seeds,
            max_neighbors: 4,
            gossip_interval: 5_000,
            messages: 10,
            gossip_delay: 0,
            liveness_interval: 13_000,
            liveness_misses: 3,
            idle_timeout: 5 * 13_000,
            seen_ttl: 10 * 60_000,
            seen_capacity: 100_000,
            seed_retry_min: 500,
            seed_retry_max: 30_000,
            max_candidates: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeedState {
    /// Not contacted (a spare, or no longer needed).
    Idle,
    /// Connecting or waiting for the peer list.
    Pending,
    /// Answered: this peer is on its list.
    Registered,
    /// Failed or lost; retried at `retry_at`.
    Backoff { retry_at: Millis },
}

#[derive(Debug)]
struct SeedLink {
    addr: SocketAddr,
    state: SeedState,
    conn: Option<ConnId>,
    backoff: Millis,
    /// It answered once: a lost connection to it is re-established.
    was_registered: bool,
    /// When `register` last went out on `conn` (None while connecting).
    asked_at: Option<Millis>,
}

/// What a connection is for. The address it leads to is its link's `remote`, but for a
/// neighbour's, whose remote may be the ephemeral end of a connection it opened: an IPv4
/// neighbour's address is kept here (read on every message delivered first), an IPv6
/// one's is found in the neighbour table. A connection's entry stays 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnRole {
    /// To seed number `.0`.
    Seed(u32),
    /// An outgoing connection to a peer, not yet established.
    Dialing,
    NeighborV4(SocketAddrV4),
    NeighborV6,
    /// Accepted, waiting for the remote's `hello`.
    Inbound,
}

impl ConnRole {
    fn neighbor(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => ConnRole::NeighborV4(a),
            SocketAddr::V6(_) => ConnRole::NeighborV6,
        }
    }

    fn is_neighbor(self) -> bool {
        matches!(self, ConnRole::NeighborV4(_) | ConnRole::NeighborV6)
    }
}

#[derive(Debug)]
struct PeerConn {
    role: ConnRole,
    link: Link,
}

#[derive(Debug)]
struct Neighbor {
    /// None while the connection is down: liveness checks then count as misses.
    conn: Option<ConnId>,
    outgoing: bool,
    /// When the pending liveness request went out: answered by any frame heard on `conn`
    /// since (see `Link::last_heard`), so the receive path does no neighbour lookup.
    asked_at: Option<Millis>,
    misses: u32,
    /// A check excused its silence while the loop was behind: judged again at the
    /// recheck, its request still pending.
    deferred: bool,
    /// Its pending request was judged a miss already (half an interval after it went
    /// out): the next check asks again without counting it twice.
    judged: bool,
}

/// Counters the swarm harness reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub gossip_frames_received: u64,
    pub gossip_first_receipts: u64,
    pub gossip_frames_sent: u64,
    pub gossip_created: u64,
}

/// The peer core.
#[derive(Debug)]
pub struct PeerCore {
    cfg: PeerConfig,
    rng: SmallRng,
    out: Outbox,
    seeds: Vec<SeedLink>,
    conns: Table<ConnId, PeerConn, Inline<ConnId, 16>>,
    neighbors: Table<SocketAddr, Neighbor>,
    /// The union of the peer lists received, minus peers found dead.
    candidates: AddrSet,
    seen: SeenCache,
    stats: PeerStats,
    gossip_due: Option<Millis>,
    /// `start` + `cfg.gossip_delay`.
    gossip_not_before: Millis,
    /// When `start` was called: gossip of our own origin stamped since then is ours.
    started: Millis,
    liveness_due: Millis,
    /// When the next pending requests are judged (half an interval after they went
    /// out, or a quarter interval after an excuse).
    recheck_due: Option<Millis>,
    sweep_due: Millis,
    seed_retry_due: Option<Millis>,
    /// When to ask a seed for a fresh list next, and the wait after that (in liveness
    /// intervals), doubled each time a refresh brings nothing new.
    refresh_due: Millis,
    refresh_backoff: u64,
    /// When this peer created its most recent messages (the last is number
    /// `stats.gossip_created`), to send them again to a neighbour that connects or comes
    /// back after a miss: what went out while a link was cut would be lost otherwise. Only
    /// the times are kept: the rest of an own message follows from them.
    own: VecDeque<Millis>,
    /// The last messages relayed, for a neighbour that links up after they went out.
    relayed: Relayed,
    /// Set by [`PeerCore::loop_behind`], taken by the next timer.
    behind: bool,
}

/// The longest wait between two peer-list refreshes, in liveness intervals.
const MAX_REFRESH_BACKOFF: u64 = 16;

/// Own messages kept for sending again: as many as a seen-cache window tolerates out of
/// order, so none of them is taken for an old one.
const OWN_KEPT: usize = 32;

impl PeerCore {
    /// The seed addresses move from `cfg` into the core's seed links: a million simulated
    /// peers would otherwise hold every address twice.
    pub fn new(mut cfg: PeerConfig, rng_seed: u64) -> Self {
        let backoff = cfg.seed_retry_min;
        let seeds = std::mem::take(&mut cfg.seeds)
            .into_iter()
            .map(|addr| SeedLink {
                addr,
                state: SeedState::Idle,
                conn: None,
                backoff,
                was_registered: false,
                asked_at: None,
            })
            .collect();
        PeerCore {
            seen: SeenCache::new(cfg.seen_ttl, cfg.seen_capacity),
            cfg,
            rng: SmallRng::seed_from_u64(rng_seed),
            out: Outbox::default(),
            seeds,
            conns: Table::new(),
            neighbors: Table::new(),
            candidates: AddrSet::default(),
            stats: PeerStats::default(),
            gossip_due: None,
            gossip_not_before: 0,
            started: 0,
            liveness_due: 0,
            recheck_due: None,
            sweep_due: 0,
            seed_retry_due: None,
            refresh_due: 0,
            refresh_backoff: 1,
            own: VecDeque::new(),
            relayed: Relayed::default(),
            behind: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.cfg.addr
    }

    /// How many seeds to register with: floor(n/2)+1 of the configured ones.
    fn majority(&self) -> usize {
        self.seeds.len() / 2 + 1
    }

    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// Neighbours with an open connection.
    pub fn connected_neighbors(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.neighbors
            .iter()
            .filter(|(_, n)| n.conn.is_some())
            .map(|(a, _)| *a)
    }

    /// How many connections, neighbours (and of them with an open connection),
    /// candidates and seen-cache origins the core holds: what a remote can make it grow.
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> [usize; 5] {
        let live = self.connected_neighbors().count();
        let (conns, neighbors) = (self.conns.len(), self.neighbors.len());
        [
            conns,
            neighbors,
            live,
            self.candidates.len(),
            self.seen.len(),
        ]
    }

    /// Seeds that have this peer on their list.
    pub fn registered_seeds(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.seeds
            .iter()
            .filter(|s| s.state == SeedState::Registered)
            .map(|s| s.addr)
    }

    pub fn start(&mut self, now: Millis) {
        self.started = now;
        self.gossip_not_before = now.saturating_add(self.cfg.gossip_delay);
        let mut order: Vec<usize> = (0..self.seeds.len()).collect();
        order.shuffle(&mut self.rng);
        order.truncate(self.majority());
        let chosen = order
            .iter()
            .filter_map(|&i| self.seeds.get(i))
            .map(|s| s.addr);
        self.out.log(Event::SeedsChosen {
            seeds: chosen.collect(),
        });
        for i in order {
            self.connect_seed(i, now);
        }
        self.liveness_due = now + self.cfg.liveness_interval;
        self.out.timer(self.liveness_due, Timer::Liveness);
        self.sweep_due = now + sweep_period(self.cfg.idle_timeout);
        self.out.timer(self.sweep_due, Timer::IdleSweep);
    }

    pub fn accept(&mut self, remote: SocketAddr, now: Millis) -> ConnId {
        let conn = self.out.new_conn();
        self.conns.insert(
            conn,
            PeerConn {
                role: ConnRole::Inbound,
                link: Link::new(remote, now),
            },
        );
        conn
    }

    pub fn connected(&mut self, conn: ConnId, now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.link.last_heard = now;
        match c.role {
            ConnRole::Seed(i) => self.ask_seed(i as usize, conn, now),
            ConnRole::Dialing => {
                let addr = c.link.remote;
                let hello = Message::Hello {
                    addr: self.cfg.addr,
                };
                self.out.send_msg(conn, hello);
                self.attach_neighbor(conn, addr, true, now);
            }
            ConnRole::NeighborV4(_) | ConnRole::NeighborV6 | ConnRole::Inbound => {}
        }
    }

    pub fn closed(&mut self, conn: ConnId, why: Disconnect, now: Millis) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let quiet = if let Disconnect::BadFrame(reason) = &why {
            let remote = c.link.remote;
            let reason = reason.clone();
            self.out.log(Event::BadFrame { remote, reason });
            true
        } else {
            false
        };
        self.detach(conn, why.to_string(), quiet, now);
    }

    pub fn message(&mut self, conn: ConnId, msg: Message, now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.link.last_heard = now;
        match (c.role, msg) {
            (ConnRole::Seed(i), Message::PeerList { peers }) => {
                self.on_peer_list(i as usize, peers, now)
            }
            (_, Message::LivenessRequest { ts, from }) => self.on_liveness_request(conn, ts, from),
            (role, Message::LivenessReply { ts, .. }) if role.is_neighbor() => {
                if let Some(addr) = self.neighbor_on(conn, role) {
                    self.on_liveness_reply(addr, ts)
                }
            }
            (ConnRole::Seed(_), Message::LivenessReply { .. }) => {}
            (role, Message::Gossip(g)) if role.is_neighbor() => {
                if let Some(addr) = self.neighbor_on(conn, role) {
                    self.on_gossip(conn, addr, g, now)
                }
            }
            (ConnRole::Inbound, Message::Hello { addr }) => self.on_hello(conn, addr, now),
            // The answering side's hello on a connection we opened.
            (role, Message::Hello { .. }) if role.is_neighbor() => {}
            (_, other) => {
                let reason = format!("unexpected {} frame", other.kind());
                self.protocol_error(conn, reason, now);
            }
        }
    }

    pub fn timer(&mut self, timer: Timer, now: Millis) {
        let behind = std::mem::take(&mut self.behind);
        match timer {
            Timer::Gossip if self.gossip_due.is_some_and(|due| now >= due) => {
                self.create_gossip(now)
            }
            Timer::Liveness if now >= self.liveness_due => self.check_liveness(now, behind),
            Timer::Recheck if self.recheck_due.is_some_and(|due| now >= due) => {
                self.recheck_liveness(now, behind)
            }
            Timer::SeedRetry if self.seed_retry_due.is_some_and(|due| now >= due) => {
                self.retry_seeds(now)
            }
            Timer::IdleSweep if now >= self.sweep_due => self.sweep_idle(now, behind),
            _ => {}
        }
    }

    /// Counts and drops a gossip frame already seen, without taking the message apart;
    /// false when the frame needs full handling by [`PeerCore::message`].
    pub fn absorb_duplicate(&mut self, conn: ConnId, g: &Gossip, now: Millis) -> bool {
        let id = GossipId {
            origin: g.origin,
            seq: g.seq,
            ts: g.ts,
        };
        self.absorb_duplicate_id(conn, &id, now)
    }

    /// As [`PeerCore::absorb_duplicate`], from the frame's identity alone.
    pub fn absorb_duplicate_id(&mut self, conn: ConnId, id: &GossipId, now: Millis) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if !c.role.is_neighbor() {
            return false;
        }
        if self.seen.is_new((id.origin, id.seq), id.ts, now) {
            return false;
        }
        c.link.last_heard = now;
        self.stats.gossip_frames_received += 1;
        true
    }

    /// See [`crate::proto::Node::prefetch_tables`].
    pub fn prefetch_tables(&self) {
        self.conns.prefetch();
        self.seen.prefetch();
        hint::prefetch(&self.stats);
    }

    /// See [`crate::proto::Node::prefetch_entries`].
    pub fn prefetch_entries(&self, conn: ConnId, origin: Option<&SocketAddr>) {
        self.conns.prefetch_value(&conn);
        if let Some(origin) = origin {
            self.seen.prefetch_window(origin);
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop()
    }

    // ----- neighbours -----

    /// Dials random candidates until `max_neighbors` outgoing connections are open or
    /// pending. True when slots stay empty for want of candidates.
    fn top_up_neighbors(&mut self, now: Millis) -> bool {
        if !self.has_majority() {
            return false;
        }
        let dialing: BTreeSet<SocketAddr> = self.dialing().collect();
        let outgoing = self.neighbors.values().filter(|n| n.outgoing).count() + dialing.len();
        let want = self.cfg.max_neighbors.saturating_sub(outgoing);
        if want == 0 {
            return false;
        }
        let fresh: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter(|a| !self.neighbors.contains_key(a) && !dialing.contains(a))
            .collect();
        let short = fresh.len() < want;
        let picks: Vec<SocketAddr> = fresh
            .choose_multiple(&mut self.rng, want)
            .copied()
            .collect();
        for addr in picks {
            self.dial(addr, now);
        }
        short
    }

    /// The neighbour whose connection `conn` (in `role`) is.
    fn neighbor_on(&self, conn: ConnId, role: ConnRole) -> Option<SocketAddr> {
        if let ConnRole::NeighborV4(a) = role {
            return Some(SocketAddr::V4(a));
        }
        let on_conn = self.neighbors.iter().find(|(_, n)| n.conn == Some(conn));
        on_conn.map(|(addr, _)| *addr)
    }

    fn dialing(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.conns.values().filter_map(|c| match c.role {
            ConnRole::Dialing => Some(c.link.remote),
            _ => None,
        })
    }

    fn dial(&mut self, addr: SocketAddr, now: Millis) {
        let conn = self.out.connect(addr);
        let link = Link::new(addr, now);
        let role = ConnRole::Dialing;
        self.conns.insert(conn, PeerConn { role, link });
    }

    fn on_hello(&mut self, conn: ConnId, addr: SocketAddr, now: Millis) {
        if addr == self.cfg.addr {
            self.protocol_error(conn, "hello names our own address".into(), now);
            return;
        }
        let hello = Message::Hello {
            addr: self.cfg.addr,
        };
        self.out.send_msg(conn, hello);
        self.attach_neighbor(conn, addr, false, now);
    }

    /// Makes `conn` the connection to neighbour `addr`. When two live connections join the
    /// same pair, both ends keep the one opened by the smaller address.
    fn attach_neighbor(&mut self, conn: ConnId, addr: SocketAddr, outgoing: bool, now: Millis) {
        let me = self.cfg.addr;
        if let Some(n) = self.neighbors.get(&addr) {
            if let Some(old) = n.conn {
                let opener = |out: bool| if out { me } else { addr };
                let keep_old =
                    opener(n.outgoing) != opener(outgoing) && opener(n.outgoing) == me.min(addr);
                let loser = if keep_old { conn } else { old };
                self.conns.remove(&loser);
                self.out.close(loser);
                if keep_old {
                    return;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.role = ConnRole::neighbor(addr);
            c.link.last_heard = now;
        }
        let n = Neighbor {
            conn: Some(conn),
            outgoing,
            asked_at: None,
            misses: 0,
            deferred: false,
            judged: false,
        };
        self.neighbors.insert(addr, n);
        self.out.log(Event::NeighborConnected { addr });
        self.catch_up(conn, now);
        if self.gossip_due.is_none() && self.stats.gossip_created < self.cfg.messages {
            self.arm_gossip(now);
        }
    }

    /// Forgets a connection the core no longer has, and what depended on it. `quiet`:
    /// the cause was already logged as a warning, so none is logged again.
    fn detach(&mut self, conn: ConnId, reason: String, quiet: bool, now: Millis) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.role {
            ConnRole::Seed(i) => self.seed_lost(i as usize, reason, quiet, now),
            ConnRole::Dialing => {
                let addr = c.link.remote;
                if !quiet {
                    let error = reason;
                    self.out.log(Event::ConnectFailed { addr, error });
                }
                self.candidates.remove(&addr);
                self.top_up_neighbors(now);
            }
            ConnRole::NeighborV4(_) | ConnRole::NeighborV6 => {
                let on_conn = self
                    .neighbors
                    .iter_mut()
                    .find(|(_, n)| n.conn == Some(conn));
                if let Some((addr, n)) = on_conn {
                    n.conn = None;
                    let addr = *addr;
                    self.out.log(Event::NeighborLost { addr, reason });
                }
            }
            ConnRole::Inbound => {}
        }
    }

    fn protocol_error(&mut self, conn: ConnId, reason: String, now: Millis) {
        if let Some(c) = self.conns.get(&conn) {
            let remote = c.link.remote;
            self.out.log(Event::BadFrame {
                remote,
                reason: reason.clone(),
            });
            self.out.close(conn);
            self.detach(conn, reason, true, now);
        }
    }

    // ----- gossip -----

    fn arm_gossip(&mut self, now: Millis) {
        let due = (now + self.cfg.gossip_interval).max(self.gossip_not_before);
        self.gossip_due = Some(due);
        self.out.timer(due, Timer::Gossip);
    }

    fn live_neighbor_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.neighbors.values().filter_map(|n| n.conn)
    }

    fn create_gossip(&mut self, now: Millis) {
        self.gossip_due = None;
        if self.live_neighbor_conns().next().is_none() {
            // Nobody to tell: keep the message for when a neighbour is back.
            self.arm_gossip(now);
            return;
        }
        let seq = self.stats.gossip_created + 1;
        let origin = self.cfg.addr;
        let text = gossip_text(now, origin, seq);
        self.seen.first_sight((origin, seq), now, now);
        self.stats.gossip_created = seq;
        self.out.log(Event::GossipCreated {
            origin,
            seq,
            text: text.clone(),
        });
        let gossip = Gossip {
            origin,
            seq,
            ts: now,
            text,
            hops: 1,
            payload: None,
        };
        if self.own.len() >= OWN_KEPT {
            self.own.pop_front();
        }
        self.own.push_back(now);
        self.broadcast(Arc::new(Message::Gossip(gossip)), None);
        if seq < self.cfg.messages {
            self.arm_gossip(now);
        }
    }

    fn on_gossip(&mut self, conn: ConnId, from: SocketAddr, mut g: Gossip, now: Millis) {
        self.stats.gossip_frames_received += 1;
        if g.origin == self.cfg.addr {
            return self.on_own_gossip(conn, &g, now);
        }
        // Stamped further ahead than the seen-cache remembers (node clocks agree far
        // better): taken in, it would make the origin's real messages look old.
        if g.ts > now.saturating_add(self.cfg.seen_ttl) {
            let ahead = g.ts - now;
            let reason = format!("gossip stamped {ahead} ms in the future");
            return self.protocol_error(conn, reason, now);
        }
        if !self.seen.first_sight((g.origin, g.seq), g.ts, now) {
            return;
        }
        self.stats.gossip_first_receipts += 1;
        self.out.log(Event::GossipReceived {
            origin: g.origin,
            seq: g.seq,
            text: g.text.clone(),
            from,
            hops: g.hops,
            created_ts: g.ts,
        });
        g.hops = g.hops.saturating_add(1);
        let msg = Arc::new(Message::Gossip(g));
        self.relayed.push(&msg);
        self.broadcast(msg, Some(conn));
    }

    /// Gossip naming this peer as its origin is never new here. A number not created
    /// yet, stamped since this peer started, is a forgery: the sender is cut off. Any
    /// other is an echo of our own message or a leftover from an earlier run on this
    /// address, and is dropped without a word.
    fn on_own_gossip(&mut self, conn: ConnId, g: &Gossip, now: Millis) {
        if g.seq > self.stats.gossip_created && g.ts >= self.started {
            let seq = g.seq;
            let reason = format!("forged gossip: our own origin with seq {seq}, never created");
            self.protocol_error(conn, reason, now);
        }
    }

    fn broadcast(&mut self, msg: Arc<Message>, except: Option<ConnId>) {
        let targets = self.neighbors.values().filter_map(|n| n.conn);
        for conn in targets.filter(|c| Some(*c) != except) {
            self.out.send(conn, Arc::clone(&msg));
            self.stats.gossip_frames_sent += 1;
        }
    }

    /// Closes connections silent for the idle timeout; none while the loop is behind
    /// (their input may be waiting unread).
    fn sweep_idle(&mut self, now: Millis, behind: bool) {
        self.sweep_due = now + sweep_period(self.cfg.idle_timeout);
        self.out.timer(self.sweep_due, Timer::IdleSweep);
        if behind {
            return;
        }
        let timeout = self.cfg.idle_timeout;
        let links = self.conns.iter().map(|(id, c)| (id, &c.link));
        for conn in idle_conns(links, now, timeout) {
            let dialing = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.role == ConnRole::Dialing);
            if dialing {
                self.out.close(conn);
                let reason = format!("connect timed out after {timeout} ms");
                self.detach(conn, reason, false, now);
            } else {
                self.protocol_error(conn, format!("no frame for {timeout} ms"), now);
            }
        }
    }
}

#[cfg(test)]
mod forged_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod replay_tests;
