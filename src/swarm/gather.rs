//! The supervisor's view of a run: the latest figures of every worker, each message's
//! spread summed over workers, whether the run is complete, and the report.
//!
//! Pure bookkeeping: workers' messages in, lines and a [`Report`] out.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::wire::{Progress, SpreadDelta};
use crate::net::NetStats;
use crate::proto::Millis;
use crate::report::{HostFacts, Report, Tally};
use crate::stress::{Plan, StressArgs};

/// Past this many planned messages, a line per message would drown the summary.
const SPREAD_LINES_MAX: u64 = 1_000;

/// One message's spread over all workers.
#[derive(Debug, Clone, Copy, Default)]
struct Book {
    created: Option<Millis>,
    delivered: u64,
    last_delivery: Millis,
    max_hops: u32,
    printed: bool,
}

/// Everything the supervisor has heard.
pub struct Gather {
    stress: StressArgs,
    plan: Plan,
    latest: Vec<Option<Progress>>,
    failed_at: HashMap<SocketAddr, Millis>,
    failing: HashSet<SocketAddr>,
    books: HashMap<(SocketAddr, u64), Book>,
    print_spreads: bool,
}

impl Gather {
    pub fn new(stress: &StressArgs, plan: Plan, workers: usize) -> Self {
        let planned = plan.originators.len() as u64 * stress.messages;
        Gather {
            stress: stress.clone(),
            plan,
            latest: vec![None; workers],
            failed_at: HashMap::new(),
            failing: HashSet::new(),
            books: HashMap::new(),
            print_spreads: planned <= SPREAD_LINES_MAX,
        }
    }

    /// Learns every peer's address (from the workers' `Bound`), to know who will fail.
    pub fn set_peers(&mut self, peers: &[SocketAddr]) {
        self.failing = (self.plan.failures.iter())
            .filter_map(|f| peers.get(f.0).copied())
            .collect();
    }

    /// Takes a worker's progress; returns the spread lines of messages it completed.
    pub fn take(&mut self, worker: usize, mut p: Progress) -> Vec<String> {
        p.tally.reindex();
        for (addr, at) in &p.failed {
            self.failed_at.insert(*addr, *at);
        }
        let deltas = std::mem::take(&mut p.spreads);
        if let Some(slot) = self.latest.get_mut(worker) {
            *slot = Some(p);
        }
        deltas.iter().filter_map(|d| self.book(d)).collect()
    }

    fn book(&mut self, d: &SpreadDelta) -> Option<String> {
        let want = self.expected(d.origin);
        let b = self.books.entry((d.origin, d.seq)).or_default();
        b.created = b.created.or(d.created);
        b.delivered += d.delivered;
        b.last_delivery = b.last_delivery.max(d.last_delivery);
        b.max_hops = b.max_hops.max(d.max_hops);
        let created = b.created?;
        if b.printed || b.delivered < want || !self.print_spreads {
            return None;
        }
        b.printed = true;
        let ms = b.last_delivery.saturating_sub(created);
        Some(format!(
            "spread  {}#{}: reached all {want} other peers in {ms} ms, at most {} hops",
            d.origin, d.seq, b.max_hops
        ))
    }

    /// First receipts a message from `origin` needs: every peer that does not fail, but
    /// the origin.
    fn expected(&self, origin: SocketAddr) -> u64 {
        let survivors = self.stress.peers.saturating_sub(self.failing.len()) as u64;
        survivors.saturating_sub(u64::from(!self.failing.contains(&origin)))
    }

    /// Messages the run must create: every originator that does not fail creates all.
    pub fn planned_messages(&self) -> u64 {
        let failing: HashSet<usize> = self.plan.failures.iter().map(|f| f.0).collect();
        let live = self
            .plan
            .originators
            .iter()
            .filter(|o| !failing.contains(o));
        live.count() as u64 * self.stress.messages
    }

    /// Whether every planned message reached every surviving peer and every failure was
    /// found and removed by every seed that had the peer, once all failures happened.
    pub fn complete(&self, r: &Report, elapsed: Millis) -> bool {
        let last_failure = self.plan.failures.iter().map(|f| f.2).max().unwrap_or(0);
        r.messages_created >= self.planned_messages()
            && r.deliveries_made == r.deliveries_expected
            && elapsed >= last_failure
            && r.failures.not_detected == 0
            && r.failures.not_removed == 0
    }

    pub fn workers(&self) -> usize {
        self.latest.len()
    }

    pub fn started(&self) -> usize {
        self.latest.iter().flatten().map(|p| p.started).sum()
    }

    pub fn net(&self) -> NetStats {
        let mut net = NetStats::default();
        for p in self.latest.iter().flatten() {
            net.add(&p.net);
        }
        net
    }

    pub fn tally(&self) -> Tally {
        let mut tally = Tally::new();
        for p in self.latest.iter().flatten() {
            tally.merge(p.tally.clone());
        }
        for (addr, at) in &self.failed_at {
            tally.failed_at(*addr, *at);
        }
        tally
    }

    /// The report from what has been gathered so far.
    pub fn report(&self, rng_seed: u64, run_ms: Millis, wall_s: f64) -> Report {
        let sum = |f: fn(&Progress) -> u64| self.latest.iter().flatten().map(f).sum::<u64>();
        let net = self.net();
        let host = HostFacts {
            mode: "swarm".into(),
            rng_seed,
            peers: self.stress.peers as u64,
            seeds: self.stress.seeds as u64,
            workers: self.latest.len() as u64,
            connections: net.connections_opened,
            originators: self.plan.originators.len() as u64,
            messages_per_originator: self.stress.messages,
            gossip_frames_received: sum(|p| p.gossip_frames_received),
            gossip_first_receipts: sum(|p| p.gossip_first_receipts),
            bytes_sent: net.bytes_sent,
            frames_sent: net.frames_sent,
            write_calls: net.write_calls,
            run_ms,
            wall_s,
            cpu_s: self.latest.iter().flatten().map(|p| p.cpu_s).sum(),
            peak_rss_per_worker_kib: (self.latest.iter())
                .map(|p| p.as_ref().map_or(0, |p| p.peak_rss_kib))
                .collect(),
            base_rss_per_worker_kib: (self.latest.iter())
                .map(|p| p.as_ref().map_or(0, |p| p.base_rss_kib))
                .collect(),
        };
        Report::new(&self.tally(), host)
    }

    /// The one-line progress: deliveries, messages, dead nodes found.
    pub fn progress_line(&self, r: &Report, elapsed: Millis) -> String {
        let f = &r.failures;
        let failures = f.killed + f.frozen;
        let pct = 100.0 * r.deliveries_made as f64 / r.deliveries_expected.max(1) as f64;
        format!(
            "{:>6.1} s  nodes {}/{}  messages {}/{}  deliveries {}/{} ({pct:.1}%)  \
             dead found {}/{failures}, removed {}  false {}",
            elapsed as f64 / 1000.0,
            self.started(),
            self.stress.peers + self.stress.seeds,
            r.messages_created,
            self.planned_messages(),
            r.deliveries_made,
            r.deliveries_expected,
            failures - f.not_detected,
            failures - f.not_removed,
            r.false_dead_reports
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Event;
    use crate::stress::test_args as args;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], port))
    }

    fn delta(origin: u16, delivered: u64, created: Option<Millis>) -> SpreadDelta {
        SpreadDelta {
            origin: a(origin),
            seq: 1,
            created,
            delivered,
            last_delivery: 150,
            max_hops: 2,
        }
    }

    #[test]
    fn a_message_is_printed_once_when_every_worker_has_delivered_it() {
        let s = args(&["--peers", "3"]);
        let plan = s.plan(1);
        let mut g = Gather::new(&s, plan, 2);
        g.set_peers(&[a(1), a(2), a(3)]);
        let p = |d| Progress {
            spreads: vec![d],
            ..Progress::default()
        };
        assert!(g.take(0, p(delta(1, 1, Some(100)))).is_empty());
        let lines = g.take(1, p(delta(1, 1, None)));
        assert_eq!(
            lines,
            vec!["spread  127.0.0.2:1#1: reached all 2 other peers in 50 ms, at most 2 hops"]
        );
        assert!(g.take(1, p(delta(1, 0, None))).is_empty());
    }

    #[test]
    fn the_report_merges_every_workers_tally() {
        let s = args(&["--peers", "2", "--messages", "1"]);
        let mut g = Gather::new(&s, s.plan(1), 2);
        let mut t0 = Tally::new();
        let created = Event::GossipCreated {
            origin: a(1),
            seq: 1,
            text: String::new(),
        };
        t0.event(100, a(1), &created);
        let mut t1 = Tally::new();
        let received = Event::GossipReceived {
            origin: a(1),
            seq: 1,
            text: String::new(),
            from: a(1),
            hops: 1,
            created_ts: 100,
        };
        t1.event(120, a(2), &received);
        for (w, tally) in [t0, t1].into_iter().enumerate() {
            let p = Progress {
                tally,
                ..Progress::default()
            };
            g.take(w, p);
        }
        let r = g.report(1, 1_000, 1.0);
        assert_eq!((r.deliveries_made, r.deliveries_expected), (1, 1));
        assert_eq!(r.host.workers, 2);
        assert!(!g.complete(&r, 1_000), "one message of the two planned");
    }
}
