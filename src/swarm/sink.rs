//! A worker's sink for its nodes' events: counts them into a mergeable report tally and
//! per-message spreads for the supervisor, and, with `--events`, writes them to the
//! worker's one JSON Lines file (never a file per node: a worker hosts thousands).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;

use super::wire::SpreadDelta;
use crate::logging::write_record;
use crate::net::Sink;
use crate::proto::{Event, Millis, Role, Severity};
use crate::report::Tally;

pub struct WorkerSink {
    pub tally: Tally,
    /// Peers planned to fail: their receipts do not count towards a message's spread.
    failing: HashSet<SocketAddr>,
    /// Spreads changed since the last [`WorkerSink::take_spreads`].
    spreads: HashMap<(SocketAddr, u64), SpreadDelta>,
    events: Option<BufWriter<File>>,
    write_failed: bool,
}

impl WorkerSink {
    pub fn new(events: Option<BufWriter<File>>) -> Self {
        WorkerSink {
            tally: Tally::new(),
            failing: HashSet::new(),
            spreads: HashMap::new(),
            events,
            write_failed: false,
        }
    }

    /// Declares a planned failure, here and in the tally.
    pub fn plan_failure(&mut self, addr: SocketAddr, kind: crate::report::FailureKind, at: Millis) {
        self.failing.insert(addr);
        self.tally.plan_failure(addr, kind, at);
    }

    /// The spreads changed since the previous call.
    pub fn take_spreads(&mut self) -> Vec<SpreadDelta> {
        self.spreads.drain().map(|(_, d)| d).collect()
    }

    fn spread(&mut self, origin: SocketAddr, seq: u64) -> &mut SpreadDelta {
        self.spreads
            .entry((origin, seq))
            .or_insert_with(|| SpreadDelta {
                origin,
                seq,
                created: None,
                delivered: 0,
                last_delivery: 0,
                max_hops: 0,
            })
    }

    fn count(&mut self, now: Millis, node: SocketAddr, event: &Event) {
        match event {
            Event::GossipCreated { origin, seq, .. } => {
                self.spread(*origin, *seq).created = Some(now);
            }
            Event::GossipReceived {
                origin, seq, hops, ..
            } if !self.failing.contains(&node) => {
                let s = self.spread(*origin, *seq);
                s.delivered += 1;
                s.last_delivery = s.last_delivery.max(now);
                s.max_hops = s.max_hops.max(*hops);
            }
            _ => {}
        }
    }

    fn write(&mut self, now: Millis, node: SocketAddr, event: &Event) {
        let Some(out) = self.events.as_mut() else {
            return;
        };
        if event.severity() == Severity::Debug {
            return;
        }
        if let Err(e) = write_record(out, now, node, event) {
            if !self.write_failed {
                log::error!("cannot write the events file: {e}; events are counted only");
                self.write_failed = true;
            }
        }
    }
}

impl Sink for WorkerSink {
    fn event(&mut self, now: Millis, _node: usize, addr: SocketAddr, _role: Role, event: &Event) {
        self.tally.event(now, addr, event);
        self.count(now, addr, event);
        self.write(now, addr, event);
    }

    fn flush(&mut self) {
        if let Some(out) = self.events.as_mut() {
            let _ = out.flush();
        }
    }
}
