//! The host's TCP memory, as Linux reports it, and whether silence proves anything.
//!
//! Past the low threshold of `net.ipv4.tcp_mem` the kernel starts to regulate TCP memory,
//! and past the pressure threshold it drops incoming segments it cannot charge. A
//! dropped segment is sent again after a retransmission timeout that doubles each time
//! (up to 120 s), so a live remote can be silent for tens of seconds, its frames dropped
//! by our own kernel: a 10,000-peer swarm on 2 cores held 1.8 GiB in kernel TCP buffers
//! (pressure at 1.46 GiB) and dropped 1.3 M segments. While the stack is so strained, and
//! for as long again afterwards (at most 120 s, while timeouts that backed off run out),
//! a node judges no remote's liveness.
//!
//! Elsewhere (no `/proc`, or unreadable) the host is never strained.

use std::time::{Duration, Instant};

/// Sampled at most this often: two small reads of `/proc`.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The longest retransmission timeout (Linux's `TCP_RTO_MAX`): no grace lasts longer.
const MAX_GRACE: Duration = Duration::from_secs(120);

/// Pages of TCP memory in use, from `/proc/net/sockstat`'s `TCP:` line (`... mem N`).
pub fn sockstat_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mem")?;
    words.next()?.parse().ok()
}

/// The low threshold of `/proc/sys/net/ipv4/tcp_mem` (pages): its first field.
pub fn tcp_mem_low(tcp_mem: &str) -> Option<u64> {
    tcp_mem.split_whitespace().next()?.parse().ok()
}

/// Whether the host is strained or in its grace after, from samples of its TCP memory.
#[derive(Debug, Default)]
pub struct Strain {
    /// When the current strain began, while it lasts.
    since: Option<Instant>,
    /// The end of the grace after the last strain.
    grace_until: Option<Instant>,
    last_sample: Option<Instant>,
    /// Time spent strained or in grace, for the loop's statistics.
    pub total: Duration,
    counted_to: Option<Instant>,
}

impl Strain {
    /// Takes one sample: `pages` in use against the `low` threshold (None: unknown).
    pub fn sample(&mut self, pages: Option<u64>, low: Option<u64>, now: Instant) {
        self.count(now);
        let strained = matches!((pages, low), (Some(p), Some(l)) if p >= l);
        match (strained, self.since) {
            (true, None) => self.since = Some(now),
            (false, Some(began)) => {
                let grace = now.saturating_duration_since(began).min(MAX_GRACE);
                self.grace_until = Some(now + grace);
                self.since = None;
            }
            _ => {}
        }
    }

    /// Whether a silent remote may be a live one whose frames our kernel dropped.
    pub fn excuses(&self, now: Instant) -> bool {
        self.since.is_some() || self.grace_until.is_some_and(|g| now < g)
    }

    /// Samples the host when the last sample is [`SAMPLE_EVERY`] old, then answers
    /// [`Strain::excuses`].
    pub fn check_host(&mut self, now: Instant) -> bool {
        let due = self
            .last_sample
            .is_none_or(|t| now.saturating_duration_since(t) >= SAMPLE_EVERY);
        if due {
            self.last_sample = Some(now);
            let pages = std::fs::read_to_string("/proc/net/sockstat").ok();
            let low = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem").ok();
            let pages = pages.as_deref().and_then(sockstat_pages);
            let low = low.as_deref().and_then(tcp_mem_low);
            self.sample(pages, low, now);
        }
        self.excuses(now)
    }

    /// Adds the time since the last count to `total` if it was excused.
    fn count(&mut self, now: Instant) {
        if let Some(from) = self.counted_to {
            if self.excuses(from) {
                self.total += now.saturating_duration_since(from);
            }
        }
        self.counted_to = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKSTAT: &str = "sockets: used 181\nTCP: inuse 34 orphan 33 tw 56273 alloc 34 mem 629\n\
                            UDP: inuse 2 mem 4\n";

    #[test]
    fn reads_the_tcp_pages_and_the_low_threshold() {
        assert_eq!(sockstat_pages(SOCKSTAT), Some(629));
        assert_eq!(tcp_mem_low("287901\t383869\t575802\n"), Some(287_901));
        assert_eq!(sockstat_pages("UDP: inuse 2 mem 4\n"), None);
        assert_eq!(sockstat_pages("TCP: inuse 3 mem\n"), None);
        assert_eq!(tcp_mem_low(""), None);
        assert_eq!(tcp_mem_low("x 1 2"), None);
    }

    #[test]
    fn excuses_while_strained_and_as_long_again_after() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Strain::default();
        s.sample(Some(10), Some(100), at(0));
        assert!(!s.excuses(at(0)), "under the threshold");
        s.sample(Some(100), Some(100), at(10));
        assert!(s.excuses(at(10)));
        s.sample(Some(99), Some(100), at(40));
        assert!(s.excuses(at(69)), "30 s strained: 30 s of grace");
        assert!(!s.excuses(at(70)));
        assert_eq!(s.total, Duration::from_secs(30));
    }

    #[test]
    fn the_grace_is_at_most_the_longest_retransmission_timeout() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Strain::default();
        s.sample(Some(5), Some(1), at(0));
        s.sample(Some(0), Some(1), at(1000));
        assert!(s.excuses(at(1119)));
        assert!(!s.excuses(at(1120)));
    }

    #[test]
    fn an_unknown_host_is_never_strained() {
        let mut s = Strain::default();
        let now = Instant::now();
        s.sample(None, Some(1), now);
        s.sample(Some(5), None, now);
        assert!(!s.excuses(now));
    }
}
