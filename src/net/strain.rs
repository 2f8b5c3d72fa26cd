//! The host's TCP memory, as Linux reports it, and whether silence proves anything.
//!
//! Past the pressure threshold of `net.ipv4.tcp_mem` the kernel enters TCP memory
//! pressure (and leaves it only below the low threshold); under pressure it drops incoming
//! segments it cannot charge. `/proc/net/protocols` shows that state as the `press` column
//! of its `TCP` row. A dropped segment is sent again after a retransmission timeout that
//! doubles each time (up to 120 s), so a live remote can be silent for tens of seconds, its frames dropped
//! by our own kernel: a 10,000-peer swarm on 2 cores held 1.8 GiB in kernel TCP buffers
//! (pressure at 1.46 GiB) and dropped 1.3 M segments. While the stack is so strained, and
//! for as long again afterwards (at most 120 s, while timeouts that backed off run out),
//! a node judges no remote's liveness.
//!
//! Elsewhere (no `/proc`, or unreadable) the host is never strained.

use std::time::{Duration, Instant};

/// Sampled at most this often: one small read of `/proc`.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The longest retransmission timeout (Linux's `TCP_RTO_MAX`): no grace lasts longer.
const MAX_GRACE: Duration = Duration::from_secs(120);

/// The kernel's TCP memory pressure, from `/proc/net/protocols`: the `press` column
/// (`yes` or `no`) of the `TCP` row; None when the table has no such row or value.
pub fn tcp_pressure(protocols: &str) -> Option<bool> {
    let header = protocols.lines().next()?;
    let column = header.split_whitespace().position(|w| w == "press")?;
    let row = protocols
        .lines()
        .find(|l| l.split_whitespace().next() == Some("TCP"))?;
    match row.split_whitespace().nth(column)? {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
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
    /// Takes one sample: whether the kernel is under TCP memory pressure (None: unknown).
    pub fn sample(&mut self, pressure: Option<bool>, now: Instant) {
        self.count(now);
        let strained = pressure == Some(true);
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
            let protocols = std::fs::read_to_string("/proc/net/protocols").ok();
            self.sample(protocols.as_deref().and_then(tcp_pressure), now);
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

    const PROTOCOLS: &str = "\
protocol  size sockets  memory press maxhdr  slab module     cl co di
UDP       1536      2       4   NI       0   yes  kernel      y  y  y
TCP       2304     34     629   yes    192   yes  kernel      y  y  y
";

    #[test]
    fn reads_the_tcp_rows_pressure_column() {
        assert_eq!(tcp_pressure(PROTOCOLS), Some(true));
        let calm = PROTOCOLS.replace("629   yes", "629   no ");
        assert_eq!(tcp_pressure(&calm), Some(false));
        let unknown = PROTOCOLS.replace("629   yes", "629   NI ");
        assert_eq!(tcp_pressure(&unknown), None);
        assert_eq!(
            tcp_pressure("protocol size press\nUDP 1 no\n"),
            None,
            "no TCP row"
        );
        assert_eq!(
            tcp_pressure("protocol size\nTCP 1 yes\n"),
            None,
            "no press column"
        );
        assert_eq!(tcp_pressure(""), None);
    }

    #[test]
    fn this_hosts_table_is_read_when_there_is_one() {
        if let Ok(table) = std::fs::read_to_string("/proc/net/protocols") {
            assert!(tcp_pressure(&table).is_some(), "{table}");
        }
    }

    #[test]
    fn excuses_while_strained_and_as_long_again_after() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Strain::default();
        s.sample(Some(false), at(0));
        assert!(!s.excuses(at(0)), "no pressure");
        s.sample(Some(true), at(10));
        assert!(s.excuses(at(10)));
        s.sample(Some(false), at(40));
        assert!(s.excuses(at(69)), "30 s strained: 30 s of grace");
        assert!(!s.excuses(at(70)));
        assert_eq!(s.total, Duration::from_secs(30));
    }

    #[test]
    fn the_grace_is_at_most_the_longest_retransmission_timeout() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Strain::default();
        s.sample(Some(true), at(0));
        s.sample(Some(false), at(1000));
        assert!(s.excuses(at(1119)));
        assert!(!s.excuses(at(1120)));
    }

    #[test]
    fn an_unknown_host_is_never_strained() {
        let mut s = Strain::default();
        let now = Instant::now();
        s.sample(None, now);
        assert!(!s.excuses(now));
    }
}
