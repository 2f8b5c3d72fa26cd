//! The stress run's observer: feeds every event to the report's [`Tally`], writes the
//! events file, and keeps the few counters that say cheaply, after every virtual
//! millisecond, whether everything planned has happened.
//!
//! The counters only decide when to stop; the report itself comes from the Tally alone.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;

use super::scenario::Progress;
use super::Observer;
use crate::logging::write_record;
use crate::proto::{Event, Millis, Severity};
use crate::report::{FailureKind, Tally};

/// What the network has done about one planned failure, as the report will judge it.
#[derive(Debug, Default)]
struct Track {
    detected: bool,
    /// Seeds that registered the peer, and seeds that removed it.
    registered: Vec<SocketAddr>,
    removed: Vec<SocketAddr>,
}

impl Track {
    /// Reported dead by someone and removed by every seed that had it.
    fn resolved(&self) -> bool {
        self.detected && self.registered.iter().all(|s| self.removed.contains(s))
    }
}

pub(crate) struct Watch<'w> {
    tally: Tally,
    peers: u64,
    failing: HashMap<SocketAddr, Track>,
    unresolved: usize,
    planned: u64,
    created: u64,
    /// First deliveries to peers that do not fail, and how many the messages created so
    /// far need.
    made: u64,
    expected: u64,
    events: Option<&'w mut dyn Write>,
    events_error: Option<String>,
}

impl<'w> Watch<'w> {
    pub(crate) fn new(peers: u64, events: Option<&'w mut dyn Write>) -> Self {
        Watch {
            tally: Tally::new(),
            peers,
            failing: HashMap::new(),
            unresolved: 0,
            planned: 0,
            created: 0,
            made: 0,
            expected: 0,
            events,
            events_error: None,
        }
    }

    pub(crate) fn plan_failure(&mut self, addr: SocketAddr, kind: FailureKind, at: Millis) {
        self.tally.plan_failure(addr, kind, at);
        if self.failing.insert(addr, Track::default()).is_none() {
            self.unresolved += 1;
        }
    }

    pub(crate) fn expect_messages(&mut self, planned: u64) {
        self.planned = planned;
    }

    /// Every planned message created and delivered to every surviving peer, and every
    /// failure detected and removed.
    pub(crate) fn all_done(&self) -> bool {
        if self.unresolved > 0 || self.created < self.planned || self.made < self.expected {
            return false;
        }
        let (made, expected) = self.tally.coverage_since(self.peers, 0);
        made == expected
    }

    pub(crate) fn progress(&self, virtual_ms: Millis, pending: usize) -> Progress {
        Progress {
            virtual_ms,
            made: self.made,
            expected: self.expected,
            created: self.created,
            planned: self.planned,
            pending,
        }
    }

    /// The tally, and the first error writing the events file.
    pub(crate) fn finish(&mut self) -> (Tally, Option<String>) {
        if let Some(out) = self.events.as_mut() {
            if let Err(e) = out.flush() {
                self.events_error.get_or_insert(e.to_string());
            }
        }
        (std::mem::take(&mut self.tally), self.events_error.take())
    }

    fn survivors(&self) -> u64 {
        self.peers.saturating_sub(self.failing.len() as u64)
    }

    fn track(&mut self, addr: &SocketAddr, update: impl FnOnce(&mut Track)) {
        let Some(t) = self.failing.get_mut(addr) else {
            return;
        };
        let was = t.resolved();
        update(t);
        match (was, t.resolved()) {
            (false, true) => self.unresolved -= 1,
            (true, false) => self.unresolved += 1,
            _ => {}
        }
    }

    fn count(&mut self, node: SocketAddr, event: &Event) {
        match event {
            Event::GossipCreated { origin, .. } => {
                self.created += 1;
                let origin_survives = !self.failing.contains_key(origin);
                self.expected += self.survivors().saturating_sub(u64::from(origin_survives));
            }
            Event::GossipReceived { .. }
                if self.failing.is_empty() || !self.failing.contains_key(&node) =>
            {
                self.made += 1;
            }
            Event::DeadNodeReported { addr } => self.track(addr, |t| t.detected = true),
            Event::PeerRegistered { peer } => self.track(peer, |t| {
                if !t.registered.contains(&node) {
                    t.registered.push(node);
                }
            }),
            Event::PeerRemoved { addr, .. } => self.track(addr, |t| t.removed.push(node)),
            _ => {}
        }
    }
}

impl Observer for Watch<'_> {
    fn event(&mut self, at: Millis, node: SocketAddr, event: &Event) {
        self.tally.event(at, node, event);
        self.count(node, event);
        if event.severity() == Severity::Debug || self.events_error.is_some() {
            return;
        }
        if let Some(out) = self.events.as_mut() {
            if let Err(e) = write_record(out, at, node, event) {
                self.events_error = Some(e.to_string());
            }
        }
    }
}
