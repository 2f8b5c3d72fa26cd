//! Accepting connections: the per-node connection cap (`--max-connections`) with
//! refusals reported at most once a second, and a listener paused, not spun, while the
//! process is out of file descriptors.
//!
//! Owns no protocol: an accepted connection is handed to its node's core by `io.rs`.

use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Driver, Entry, Sink};
use crate::proto::Event;

/// Refusals at the cap are reported at most this often, with their count.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long a listener rests after accept failed for want of resources.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(200);

/// Connections refused at a node's cap and not yet reported.
#[derive(Debug, Default)]
pub struct Refusals {
    unreported: u64,
    last_report: Option<Instant>,
}

impl Refusals {
    /// Counts one refusal; Some(count) when a report is due now (the first of a burst,
    /// or a second after the last report).
    pub fn refuse(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        self.due(now)
    }

    /// The count to report now, if any refusal waits and the last report is old enough.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        let recent = self
            .last_report
            .is_some_and(|t| now.saturating_duration_since(t) < REPORT_EVERY);
        if self.unreported == 0 || recent {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// When the refusals still unreported may be reported.
    pub fn next_report(&self) -> Option<Instant> {
        match self.unreported {
            0 => None,
            _ => Some(
                self.last_report
                    .map_or(Instant::now(), |t| t + REPORT_EVERY),
            ),
        }
    }
}

/// A listener taken off the poll because accept failed for want of resources.
#[derive(Debug)]
pub struct Paused {
    key: usize,
    node: usize,
    since: Instant,
    retry_at: Instant,
    /// Off the poll now (false while a retry is under way).
    resting: bool,
}

impl<S: Sink> Driver<S> {
    /// Accepts until the listener would block, or pauses it.
    pub(super) fn accept_all(&mut self, key: usize, node: usize) {
        loop {
            let Some(Entry::Listener { listener, .. }) = self.entries.get(key) else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    self.accepted_again(key);
                    self.admit(node, stream, remote);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return self.accepted_again(key),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // That one connection is gone; others may wait.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once would spin.
                Err(e) => return self.pause(key, node, &e),
            }
        }
    }

    /// Hands a connection to its node, or closes it at once past the node's cap.
    fn admit(&mut self, node: usize, stream: TcpStream, remote: SocketAddr) {
        let Some(h) = self.nodes.get_mut(node) else {
            return;
        };
        if h.conns.len() < self.max_connections {
            return self.adopt(node, stream, remote);
        }
        drop(stream);
        self.stats.connections_refused += 1;
        match h.refusals.refuse(Instant::now()) {
            Some(count) => self.report_refusals(node, count),
            None if !self.refusing.contains(&node) => self.refusing.push(node),
            None => {}
        }
    }

    fn report_refusals(&mut self, node: usize, count: u64) {
        let max = self.max_connections;
        self.log(node, &Event::ConnectionsRefused { count, max });
    }

    /// Takes a listener off the poll for [`ACCEPT_PAUSE`]; logs once per episode.
    fn pause(&mut self, key: usize, node: usize, e: &std::io::Error) {
        if let Some(Entry::Listener { listener, .. }) = self.entries.get_mut(key) {
            let _ = self.poll.registry().deregister(listener);
        }
        let now = Instant::now();
        let retry_at = now + ACCEPT_PAUSE;
        if let Some(p) = self.paused.iter_mut().find(|p| p.key == key) {
            p.retry_at = retry_at;
            p.resting = true;
            return;
        }
        let since = now;
        let resting = true;
        self.paused.push(Paused {
            key,
            node,
            since,
            retry_at,
            resting,
        });
        let error = e.to_string();
        self.log(node, &Event::AcceptPaused { error });
    }

    /// Ends a listener's pause once an accept got through or found nothing waiting.
    fn accepted_again(&mut self, key: usize) {
        let Some(i) = self.paused.iter().position(|p| p.key == key && !p.resting) else {
            return;
        };
        let p = self.paused.swap_remove(i);
        let paused_ms = p.since.elapsed().as_millis() as u64;
        self.log(p.node, &Event::AcceptResumed { paused_ms });
    }

    /// Reports refusals that waited out [`REPORT_EVERY`] and retries paused listeners.
    pub(super) fn accept_limits_due(&mut self) {
        let now = Instant::now();
        let mut refusing = std::mem::take(&mut self.refusing);
        refusing.retain(|&node| {
            let Some(h) = self.nodes.get_mut(node) else {
                return false;
            };
            match h.refusals.due(now) {
                Some(count) => self.report_refusals(node, count),
                None => return h.refusals.next_report().is_some(),
            }
            false
        });
        self.refusing = refusing;
        let due: Vec<(usize, usize)> = self
            .paused
            .iter_mut()
            .filter(|p| p.resting && p.retry_at <= now)
            .map(|p| {
                p.resting = false;
                (p.key, p.node)
            })
            .collect();
        for (key, node) in due {
            self.retry_accept(key, node);
        }
    }

    /// Puts a paused listener back on the poll and accepts what waits in its backlog
    /// (connections that arrived meanwhile raise no new edge).
    fn retry_accept(&mut self, key: usize, node: usize) {
        if !self.is_live(node) {
            return;
        }
        let Some(Entry::Listener { listener, .. }) = self.entries.get_mut(key) else {
            return;
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(listener, Token(key), Interest::READABLE)
        {
            return self.pause(key, node, &e);
        }
        self.accept_all(key, node);
    }

    /// The next instant the accept limits need the loop: a report or a retry.
    pub(super) fn accept_limits_deadline(&self) -> Option<Instant> {
        let reports = self.refusing.iter().filter_map(|&n| {
            let h = self.nodes.get(n)?;
            h.refusals.next_report()
        });
        let retries = self.paused.iter().filter(|p| p.resting).map(|p| p.retry_at);
        reports.chain(retries).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_of_a_burst_is_reported_at_once_and_the_rest_once_a_second() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        assert_eq!(r.refuse(t0), Some(1));
        for i in 1..=999u32 {
            assert_eq!(r.refuse(t0 + Duration::from_micros(u64::from(i))), None);
        }
        assert_eq!(r.next_report(), Some(t0 + REPORT_EVERY));
        assert_eq!(r.due(t0 + Duration::from_millis(999)), None);
        assert_eq!(r.due(t0 + REPORT_EVERY), Some(999));
        assert_eq!(r.next_report(), None, "nothing left to report");
        assert_eq!(r.due(t0 + 3 * REPORT_EVERY), None);
    }

    #[test]
    fn a_refusal_long_after_the_last_report_is_reported_at_once() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        assert_eq!(r.refuse(t0), Some(1));
        assert_eq!(r.refuse(t0 + 2 * REPORT_EVERY), Some(1));
    }
}
