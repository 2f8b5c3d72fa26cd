//! The stress report: what `swarm` and `sim` measure, computed from the nodes' events.
//!
//! A [`Tally`] consumes events as they happen and can be merged (a swarm's workers each
//! keep one; the supervisor adds them up). [`Report`] is the final, printable and
//! JSON-serializable result. Pure: the host supplies times, resources and counters.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::proto::{Event, Millis};

/// A latency histogram: exact below 1024 ms, then 64 buckets per power of two (error
/// under 1.6%). Mergeable and small whatever the number of samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    counts: BTreeMap<u32, u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn bucket(v: u64) -> u32 {
        if v < 1024 {
            return v as u32;
        }
        let exp = 63 - v.leading_zeros(); // >= 10
        let sub = (v >> (exp - 6)) & 63;
        1024 + (exp - 10) * 64 + sub as u32
    }

    fn lower_bound(b: u32) -> u64 {
        if b < 1024 {
            return u64::from(b);
        }
        let exp = (b - 1024) / 64 + 10;
        let sub = u64::from((b - 1024) % 64);
        (1u64 << exp) + (sub << (exp - 6))
    }

    pub fn record(&mut self, v: u64) {
        *self.counts.entry(Self::bucket(v)).or_insert(0) += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in &other.counts {
            *self.counts.entry(*b).or_insert(0) += n;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), as its bucket's lower bound; exact max at 1.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in &self.counts {
            seen += n;
            if seen >= rank {
                return Self::lower_bound(*b).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Quantiles {
        Quantiles {
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            max: self.quantile(1.0),
        }
    }
}

/// p50/p90/p99/max of a distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// How a planned failure stops a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Kill,
    Freeze,
}

/// One gossip message's spread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Spread {
    origin: Option<SocketAddr>,
    seq: u64,
    created: Millis,
    /// First receipts by peers that do not fail.
    to_survivors: u64,
    last_delivery: Millis,
    max_hops: u32,
}

/// A peer that fails on purpose, and what the network did about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FailTrack {
    addr: SocketAddr,
    kind: FailureKind,
    at: Millis,
    first_report: Option<Millis>,
    /// Seeds that registered it, and when each removed it.
    registered_at: Vec<SocketAddr>,
    removed_at: Vec<(SocketAddr, Millis)>,
}

/// Counts from the events of many nodes; mergeable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    spreads: Vec<Spread>,
    #[serde(skip)]
    index: HashMap<(SocketAddr, u64), usize>,
    failures: Vec<FailTrack>,
    #[serde(skip)]
    failed: HashMap<SocketAddr, usize>,
    pub latency: Histogram,
    pub deliveries: u64,
    pub false_dead_reports: u64,
    pub false_removals: u64,
    /// Dead-node reports a seed refuted by asking the peer itself.
    pub refuted_reports: u64,
    pub warnings: u64,
    pub last_creation: Millis,
    pub last_delivery: Millis,
}

impl Tally {
    pub fn new() -> Self {
        Tally::default()
    }

    /// Declares that `addr` will fail (or has failed) at `at`: it no longer counts as a
    /// receiver, and reports of it are true ones.
    pub fn plan_failure(&mut self, addr: SocketAddr, kind: FailureKind, at: Millis) {
        if self.failed.contains_key(&addr) {
            return;
        }
        self.failed.insert(addr, self.failures.len());
        self.failures.push(FailTrack {
            addr,
            kind,
            at,
            first_report: None,
            registered_at: Vec::new(),
            removed_at: Vec::new(),
        });
    }

    /// Updates the time of a planned failure (a swarm learns the exact instant late).
    pub fn failed_at(&mut self, addr: SocketAddr, at: Millis) {
        if let Some(f) = self
            .failed
            .get(&addr)
            .and_then(|&i| self.failures.get_mut(i))
        {
            f.at = at;
        }
    }

    fn spread(&mut self, origin: SocketAddr, seq: u64) -> &mut Spread {
        let next = self.spreads.len();
        let i = *self.index.entry((origin, seq)).or_insert(next);
        if i == next {
            self.spreads.push(Spread {
                origin: Some(origin),
                seq,
                ..Spread::default()
            });
        }
        &mut self.spreads[i]
    }

    fn failure(&mut self, addr: &SocketAddr) -> Option<&mut FailTrack> {
        let i = *self.failed.get(addr)?;
        self.failures.get_mut(i)
    }

    /// Takes one event logged by `node` at `at`.
    pub fn event(&mut self, at: Millis, node: SocketAddr, event: &Event) {
        match event {
            Event::GossipCreated { origin, seq, .. } => {
                self.spread(*origin, *seq).created = at;
                self.last_creation = self.last_creation.max(at);
            }
            Event::GossipReceived {
                origin,
                seq,
                hops,
                created_ts,
                ..
            } => self.received(at, node, *origin, *seq, *hops, *created_ts),
            Event::DeadNodeReported { addr } => match self.failure(addr) {
                Some(f) => f.first_report = Some(f.first_report.map_or(at, |t| t.min(at))),
                None => self.false_dead_reports += 1,
            },
            Event::PeerRegistered { peer } => {
                if let Some(f) = self.failure(peer) {
                    if !f.registered_at.contains(&node) {
                        f.registered_at.push(node);
                    }
                }
            }
            Event::DeadNodeRefuted { .. } => self.refuted_reports += 1,
            Event::PeerRemoved { addr, .. } => match self.failure(addr) {
                Some(f) => f.removed_at.push((node, at)),
                None => self.false_removals += 1,
            },
            _ => {}
        }
        if event.severity() == crate::proto::Severity::Warn {
            self.warnings += 1;
        }
    }

    fn received(
        &mut self,
        at: Millis,
        node: SocketAddr,
        origin: SocketAddr,
        seq: u64,
        hops: u32,
        created: Millis,
    ) {
        self.deliveries += 1;
        self.latency.record(at.saturating_sub(created));
        self.last_delivery = self.last_delivery.max(at);
        let survivor = !self.failed.contains_key(&node);
        let s = self.spread(origin, seq);
        if s.created == 0 {
            s.created = created;
        }
        if survivor {
            s.to_survivors += 1;
        }
        s.last_delivery = s.last_delivery.max(at);
        s.max_hops = s.max_hops.max(hops);
    }

    /// Adds another tally (another worker's) into this one.
    pub fn merge(&mut self, other: Tally) {
        for s in other.spreads {
            let Some(origin) = s.origin else { continue };
            let mine = self.spread(origin, s.seq);
            if s.created != 0 && (mine.created == 0 || s.created < mine.created) {
                mine.created = s.created;
            }
            mine.to_survivors += s.to_survivors;
            mine.last_delivery = mine.last_delivery.max(s.last_delivery);
            mine.max_hops = mine.max_hops.max(s.max_hops);
        }
        for f in other.failures {
            self.plan_failure(f.addr, f.kind, f.at);
            if let Some(mine) = self.failure(&f.addr) {
                mine.first_report = match (mine.first_report, f.first_report) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                for s in f.registered_at {
                    if !mine.registered_at.contains(&s) {
                        mine.registered_at.push(s);
                    }
                }
                mine.removed_at.extend(f.removed_at);
            }
        }
        self.latency.merge(&other.latency);
        self.deliveries += other.deliveries;
        self.false_dead_reports += other.false_dead_reports;
        self.false_removals += other.false_removals;
        self.refuted_reports += other.refuted_reports;
        self.warnings += other.warnings;
        self.last_creation = self.last_creation.max(other.last_creation);
        self.last_delivery = self.last_delivery.max(other.last_delivery);
    }

    /// Rebuilds the lookup maps after deserializing.
    pub fn reindex(&mut self) {
        self.index = self
            .spreads
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.origin.map(|o| ((o, s.seq), i)))
            .collect();
        self.failed = self
            .failures
            .iter()
            .enumerate()
            .map(|(i, f)| (f.addr, i))
            .collect();
    }

    pub fn created(&self) -> u64 {
        self.spreads.iter().filter(|s| s.created != 0).count() as u64
    }

    /// (made, expected) first deliveries to surviving peers of messages created at or
    /// after `since`, in a network of `peers` peers.
    pub fn coverage_since(&self, peers: u64, since: Millis) -> (u64, u64) {
        let survivors = peers.saturating_sub(self.failures.len() as u64);
        self.spreads
            .iter()
            .filter(|s| s.created >= since && s.created != 0)
            .fold((0, 0), |(made, expected), s| {
                let origin_survives = s.origin.is_some_and(|o| !self.failed.contains_key(&o));
                let want = survivors.saturating_sub(u64::from(origin_survives));
                (made + s.to_survivors.min(want), expected + want)
            })
    }

    /// When the last planned failure happened, if any.
    pub fn last_failure(&self) -> Option<Millis> {
        self.failures.iter().map(|f| f.at).max()
    }

    fn failure_report(&self) -> FailureReport {
        let mut detection = Vec::new();
        let mut removal = Vec::new();
        let (mut undetected, mut unremoved) = (0, 0);
        for f in &self.failures {
            match f.first_report {
                Some(t) => detection.push(t.saturating_sub(f.at)),
                None => undetected += 1,
            }
            let all_removed = f
                .registered_at
                .iter()
                .all(|s| f.removed_at.iter().any(|(r, _)| r == s));
            match f.removed_at.iter().map(|(_, t)| *t).max() {
                Some(t) if all_removed => removal.push(t.saturating_sub(f.at)),
                _ => unremoved += 1,
            }
        }
        let count = |k| self.failures.iter().filter(|f| f.kind == k).count() as u64;
        FailureReport {
            killed: count(FailureKind::Kill),
            frozen: count(FailureKind::Freeze),
            detection_ms: MinMedMax::of(detection),
            removal_ms: MinMedMax::of(removal),
            not_detected: undetected,
            not_removed: unremoved,
        }
    }
}

/// min / median / max of a few values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MinMedMax {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl MinMedMax {
    fn of(mut v: Vec<u64>) -> Option<Self> {
        v.sort_unstable();
        Some(MinMedMax {
            min: *v.first()?,
            median: *v.get(v.len() / 2)?,
            max: *v.last()?,
        })
    }
}

/// What happened to the peers killed or frozen on purpose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    pub killed: u64,
    pub frozen: u64,
    /// Failure to the first `dead_node_reported` about it.
    pub detection_ms: Option<MinMedMax>,
    /// Failure to the last `peer_removed` by a seed that had registered it.
    pub removal_ms: Option<MinMedMax>,
    pub not_detected: u64,
    /// Not removed by every seed that had registered it.
    pub not_removed: u64,
}

/// What the host (swarm supervisor or simulator) knows beyond the events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub mode: String,
    pub rng_seed: u64,
    pub peers: u64,
    pub seeds: u64,
    pub workers: u64,
    pub connections: u64,
    pub originators: u64,
    pub messages_per_originator: u64,
    /// Gossip frames received by peers, and first receipts among them.
    pub gossip_frames_received: u64,
    pub gossip_first_receipts: u64,
    pub bytes_sent: u64,
    pub frames_sent: u64,
    pub write_calls: u64,
    /// Virtual or real time the network ran, for the per-second rates.
    pub run_ms: u64,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_per_worker_kib: Vec<u64>,
    /// Each worker's RSS before it hosted a node (its code, allocator and buffers).
    #[serde(default)]
    pub base_rss_per_worker_kib: Vec<u64>,
}

/// The report `swarm` and `sim` print and write with `--report`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub host: HostFacts,
    pub messages_created: u64,
    pub deliveries_made: u64,
    pub deliveries_expected: u64,
    /// deliveries_made / deliveries_expected, over peers alive at the end.
    pub coverage: f64,
    /// The same over messages created after the last failure (None without failures).
    pub coverage_after_failures: Option<f64>,
    pub latency_ms: Quantiles,
    pub max_hops: u32,
    pub last_delivery_after_last_creation_ms: u64,
    pub redundancy: f64,
    pub bytes_sent_per_peer_per_s: f64,
    pub frames_per_write: Option<f64>,
    pub failures: FailureReport,
    pub false_dead_reports: u64,
    pub false_removals: u64,
    /// Reports refuted by the seeds' own checks (the peer answered).
    pub refuted_reports: u64,
    pub warnings: u64,
    pub cpu_us_per_delivery: Option<f64>,
    pub rss_per_peer_bytes: Option<u64>,
    /// The same without each worker's RSS from before it hosted a node: what the nodes
    /// themselves took (their state, buffers and queues; kernel socket buffers are not
    /// in RSS).
    #[serde(default)]
    pub node_rss_per_peer_bytes: Option<u64>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Peak RSS beyond each worker's base, summed, per peer; None without a base for every
/// worker.
fn node_rss_per_peer(host: &HostFacts) -> Option<u64> {
    let (peaks, bases) = (&host.peak_rss_per_worker_kib, &host.base_rss_per_worker_kib);
    if host.peers == 0 || peaks.is_empty() || bases.len() != peaks.len() || bases.contains(&0) {
        return None;
    }
    let beyond: u64 = peaks
        .iter()
        .zip(bases)
        .map(|(p, b)| p.saturating_sub(*b))
        .sum();
    Some(beyond * 1024 / host.peers)
}

impl Report {
    pub fn new(tally: &Tally, host: HostFacts) -> Self {
        let (made, expected) = tally.coverage_since(host.peers, 0);
        let after = tally.last_failure().map(|t| {
            let (m, e) = tally.coverage_since(host.peers, t);
            if e == 0 {
                1.0
            } else {
                ratio(m, e)
            }
        });
        let run_s = host.run_ms as f64 / 1000.0;
        let rss: u64 = host.peak_rss_per_worker_kib.iter().sum();
        Report {
            messages_created: tally.created(),
            deliveries_made: made,
            deliveries_expected: expected,
            coverage: if expected == 0 {
                0.0
            } else {
                ratio(made, expected)
            },
            coverage_after_failures: after,
            latency_ms: tally.latency.summary(),
            max_hops: tally.spreads.iter().map(|s| s.max_hops).max().unwrap_or(0),
            last_delivery_after_last_creation_ms: tally
                .last_delivery
                .saturating_sub(tally.last_creation),
            redundancy: ratio(host.gossip_frames_received, host.gossip_first_receipts),
            bytes_sent_per_peer_per_s: if run_s > 0.0 {
                ratio(host.bytes_sent, host.peers) / run_s
            } else {
                0.0
            },
            frames_per_write: (host.write_calls > 0)
                .then(|| ratio(host.frames_sent, host.write_calls)),
            failures: tally.failure_report(),
            false_dead_reports: tally.false_dead_reports,
            false_removals: tally.false_removals,
            refuted_reports: tally.refuted_reports,
            warnings: tally.warnings,
            cpu_us_per_delivery: (tally.deliveries > 0 && host.cpu_s > 0.0)
                .then(|| host.cpu_s * 1e6 / tally.deliveries as f64),
            rss_per_peer_bytes: (rss > 0 && host.peers > 0).then(|| rss * 1024 / host.peers),
            node_rss_per_peer_bytes: node_rss_per_peer(&host),
            host,
        }
    }

    /// True when every expected delivery was made and no live peer was reported dead.
    pub fn complete(&self) -> bool {
        self.deliveries_expected > 0 && self.deliveries_made == self.deliveries_expected
    }

    /// The one-screen human summary.
    pub fn render(&self) -> String {
        let h = &self.host;
        let f = &self.failures;
        let mmm = |m: Option<MinMedMax>| {
            m.map_or("-".to_string(), |m| {
                format!("{}/{}/{} ms", m.min, m.median, m.max)
            })
        };
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.2}{unit}"));
        let mut lines = vec![
            format!("report ({}, rng seed {})", h.mode, h.rng_seed),
            format!(
                "  nodes        {} peers, {} seeds, {} workers, {} connections",
                h.peers, h.seeds, h.workers, h.connections
            ),
            format!(
                "  messages     {} created ({} originators x {})",
                self.messages_created, h.originators, h.messages_per_originator
            ),
            format!(
                "  coverage     {:.4}% ({} of {} deliveries to peers alive at the end)",
                100.0 * self.coverage,
                self.deliveries_made,
                self.deliveries_expected
            ),
        ];
        if let Some(c) = self.coverage_after_failures {
            lines.push(format!(
                "               {:.4}% for messages created after the last failure",
                100.0 * c
            ));
        }
        let l = self.latency_ms;
        lines.extend([
            format!("  latency      p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (creation to delivery)", l.p50, l.p90, l.p99, l.max),
            format!("  spread       max hops {}, last delivery {} ms after the last creation", self.max_hops, self.last_delivery_after_last_creation_ms),
            format!("  redundancy   {:.2} gossip frames received per first delivery", self.redundancy),
            format!("  traffic      {:.0} bytes sent per peer per second, {} frames per write", self.bytes_sent_per_peer_per_s, opt(self.frames_per_write, "")),
            format!("  failures     {} killed, {} frozen; detection {}; removal {}; {} undetected, {} not removed", f.killed, f.frozen, mmm(f.detection_ms), mmm(f.removal_ms), f.not_detected, f.not_removed),
            format!(
                "  false        {} dead reports of live peers ({} refuted by a seed's check), {} removals of live peers; {} warnings",
                self.false_dead_reports, self.refuted_reports, self.false_removals, self.warnings
            ),
        ]);
        if h.wall_s > 0.0 || h.cpu_s > 0.0 || !h.peak_rss_per_worker_kib.is_empty() {
            lines.extend([
                format!(
                    "  cost         wall {:.1} s, CPU {:.1} s, {} us CPU per delivery",
                    h.wall_s,
                    h.cpu_s,
                    opt(self.cpu_us_per_delivery, "")
                ),
                format!(
                    "  memory       peak RSS per worker {:?} KiB, {} bytes per peer; {} bytes per peer beyond each worker's RSS before its nodes ({:?} KiB)",
                    h.peak_rss_per_worker_kib,
                    self.rss_per_peer_bytes
                        .map_or("-".into(), |b| b.to_string()),
                    self.node_rss_per_peer_bytes
                        .map_or("-".into(), |b| b.to_string()),
                    h.base_rss_per_worker_kib,
                ),
            ]);
        } else {
            lines.push("  cost         not in a deterministic report (see the host line)".into());
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn received(origin: u16, seq: u64) -> Event {
        Event::GossipReceived {
            origin: a(origin),
            seq,
            text: String::new(),
            from: a(origin),
            hops: 2,
            created_ts: 100,
        }
    }

    fn created(origin: u16, seq: u64) -> Event {
        Event::GossipCreated {
            origin: a(origin),
            seq,
            text: String::new(),
        }
    }

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.02, "{p50}");
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.count(), 100_000);
    }

    #[test]
    fn small_latencies_are_exact() {
        let mut h = Histogram::default();
        for v in [1, 2, 3, 4, 5] {
            h.record(v);
        }
        assert_eq!(
            h.summary(),
            Quantiles {
                p50: 3,
                p90: 5,
                p99: 5,
                max: 5
            }
        );
    }

    #[test]
    fn coverage_counts_only_survivors_and_never_exceeds_expected() {
        let mut t = Tally::new();
        t.plan_failure(a(3), FailureKind::Kill, 500);
        t.event(100, a(1), &created(1, 1));
        t.event(110, a(2), &received(1, 1));
        t.event(120, a(3), &received(1, 1));
        // 3 peers, one failed: survivors 1 and 2; origin 1 survives, so 1 delivery expected.
        let r = Report::new(
            &t,
            HostFacts {
                peers: 3,
                ..HostFacts::default()
            },
        );
        assert_eq!((r.deliveries_made, r.deliveries_expected), (1, 1));
        assert_eq!(r.coverage, 1.0);
        assert!(r.complete());
    }

    #[test]
    fn reports_of_live_peers_are_false_and_of_failed_ones_are_detections() {
        let mut t = Tally::new();
        t.plan_failure(a(3), FailureKind::Freeze, 1_000);
        t.event(500, a(9), &Event::PeerRegistered { peer: a(3) });
        t.event(2_000, a(1), &Event::DeadNodeReported { addr: a(3) });
        t.event(2_100, a(1), &Event::DeadNodeReported { addr: a(2) });
        t.event(
            2_500,
            a(9),
            &Event::PeerRemoved {
                addr: a(3),
                reason: String::new(),
            },
        );
        let r = Report::new(
            &t,
            HostFacts {
                peers: 3,
                ..HostFacts::default()
            },
        );
        assert_eq!(r.false_dead_reports, 1);
        assert_eq!(r.failures.frozen, 1);
        assert_eq!(
            r.failures.detection_ms,
            Some(MinMedMax {
                min: 1_000,
                median: 1_000,
                max: 1_000
            })
        );
        assert_eq!(r.failures.removal_ms.map(|m| m.max), Some(1_500));
        assert_eq!(r.failures.not_removed, 0);
    }

    #[test]
    fn memory_per_peer_counts_what_each_worker_grew_by_past_its_base() {
        let host = |base: Vec<u64>| HostFacts {
            peers: 1_000,
            peak_rss_per_worker_kib: vec![20_000, 18_000],
            base_rss_per_worker_kib: base,
            ..HostFacts::default()
        };
        let r = Report::new(&Tally::new(), host(vec![4_000, 4_000]));
        assert_eq!(r.rss_per_peer_bytes, Some(38_000 * 1024 / 1_000));
        assert_eq!(r.node_rss_per_peer_bytes, Some(30_000 * 1024 / 1_000));
        // A worker that did not say (an older one) leaves the figure out.
        for partial in [vec![], vec![4_000], vec![4_000, 0]] {
            let r = Report::new(&Tally::new(), host(partial));
            assert_eq!(r.node_rss_per_peer_bytes, None);
        }
    }

    #[test]
    fn merged_tallies_add_up_and_survive_json() {
        let mut w1 = Tally::new();
        w1.event(100, a(1), &created(1, 1));
        let mut w2 = Tally::new();
        w2.event(150, a(2), &received(1, 1));
        let json = serde_json::to_string(&w2).unwrap();
        let mut back: Tally = serde_json::from_str(&json).unwrap();
        back.reindex();
        w1.merge(back);
        assert_eq!(w1.coverage_since(2, 0), (1, 1));
        assert_eq!(w1.deliveries, 1);
    }
}
