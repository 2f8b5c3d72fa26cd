//! Log events: what a seed or peer core reports, in two renderings.
//!
//! `text` gives the human line in the assignment's own words ("Received Gossip Message :",
//! "Liveness Request:", "Dead Node:"); serde gives the JSON Lines object for tools. Pure:
//! the shell decides where each rendering goes.

use serde::Serialize;
use std::fmt::Write as _;
use std::net::SocketAddr;

use super::Millis;

/// How loud an event is; maps onto the `log` crate's levels in the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Warn,
}

/// One thing that happened at a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    // Seed events.
    PeerRegistered {
        peer: SocketAddr,
    },
    DeadNodeReceived {
        addr: SocketAddr,
        reporter: SocketAddr,
        report_ts: Millis,
    },
    PeerRemoved {
        addr: SocketAddr,
        reason: String,
    },
    /// A dead-node report about a peer that then answered the seed's own check.
    DeadNodeRefuted {
        addr: SocketAddr,
        reporter: SocketAddr,
    },
    // Peer events.
    SeedsChosen {
        seeds: Vec<SocketAddr>,
    },
    SeedUnreachable {
        seed: SocketAddr,
        error: String,
        retry_ms: Millis,
    },
    PeerListReceived {
        from: SocketAddr,
        peers: Vec<SocketAddr>,
    },
    NeighborConnected {
        addr: SocketAddr,
    },
    NeighborLost {
        addr: SocketAddr,
        reason: String,
    },
    ConnectFailed {
        addr: SocketAddr,
        error: String,
    },
    GossipCreated {
        origin: SocketAddr,
        seq: u64,
        text: String,
    },
    GossipReceived {
        origin: SocketAddr,
        seq: u64,
        text: String,
        from: SocketAddr,
        hops: u32,
        created_ts: Millis,
    },
    LivenessRequest {
        from: SocketAddr,
        request_ts: Millis,
    },
    LivenessReply {
        from: SocketAddr,
        request_ts: Millis,
    },
    LivenessMiss {
        addr: SocketAddr,
        misses: u32,
    },
    DeadNodeReported {
        addr: SocketAddr,
    },
    // Both roles.
    BadFrame {
        remote: SocketAddr,
        reason: String,
    },
    // Both roles, from the shell rather than the core.
    /// Connections accepted past `--max-connections` and closed at once (one event a
    /// second at most, with the count since the last one).
    ConnectionsRefused {
        count: u64,
        max: usize,
    },
    /// accept() failed for want of resources (file descriptors): accepting rests.
    AcceptPaused {
        error: String,
    },
    /// Accepting works again after a pause.
    AcceptResumed {
        paused_ms: u64,
    },
    /// A connection whose remote stopped reading, closed with this many bytes unsent.
    SendQueueFull {
        remote: SocketAddr,
        queued: usize,
    },
}

impl Event {
    /// The event's name as it appears in the JSON Lines `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            Event::PeerRegistered { .. } => "peer_registered",
            Event::DeadNodeReceived { .. } => "dead_node_received",
            Event::PeerRemoved { .. } => "peer_removed",
            Event::DeadNodeRefuted { .. } => "dead_node_refuted",
            Event::SeedsChosen { .. } => "seeds_chosen",
            Event::SeedUnreachable { .. } => "seed_unreachable",
            Event::PeerListReceived { .. } => "peer_list_received",
            Event::NeighborConnected { .. } => "neighbor_connected",
            Event::NeighborLost { .. } => "neighbor_lost",
            Event::ConnectFailed { .. } => "connect_failed",
            Event::GossipCreated { .. } => "gossip_created",
            Event::GossipReceived { .. } => "gossip_received",
            Event::LivenessRequest { .. } => "liveness_request",
            Event::LivenessReply { .. } => "liveness_reply",
            Event::LivenessMiss { .. } => "liveness_miss",
            Event::DeadNodeReported { .. } => "dead_node_reported",
            Event::BadFrame { .. } => "bad_frame",
            Event::ConnectionsRefused { .. } => "connections_refused",
            Event::AcceptPaused { .. } => "accept_paused",
            Event::AcceptResumed { .. } => "accept_resumed",
            Event::SendQueueFull { .. } => "send_queue_full",
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            Event::LivenessRequest { .. } | Event::LivenessReply { .. } => Severity::Debug,
            Event::SeedUnreachable { .. }
            | Event::DeadNodeRefuted { .. }
            | Event::ConnectFailed { .. }
            | Event::LivenessMiss { .. }
            | Event::BadFrame { .. }
            | Event::ConnectionsRefused { .. }
            | Event::AcceptPaused { .. }
            | Event::SendQueueFull { .. } => Severity::Warn,
            _ => Severity::Info,
        }
    }

    /// The human log line (without the time prefix) of this event at `node`, at `now`:
    /// always one line of at most about [`MAX_LINE`] bytes, whatever a remote sent.
    pub fn text(&self, node: SocketAddr, now: Millis) -> String {
        one_line(self.raw_text(node, now))
    }

    fn raw_text(&self, node: SocketAddr, now: Millis) -> String {
        match self {
            Event::PeerRegistered { peer } => format!("Peer registered: {peer}"),
            Event::DeadNodeReceived {
                addr,
                reporter,
                report_ts,
            } => format!("Received Dead Node:{addr}:{report_ts}:{reporter}"),
            Event::PeerRemoved { addr, reason } => format!("Removed peer {addr}: {reason}"),
            Event::DeadNodeRefuted { addr, reporter } => {
                format!("False Dead Node report about {addr} from {reporter}: it answered the seed's check")
            }
            Event::SeedsChosen { seeds } => format!("Seeds chosen : {}", list(seeds)),
            Event::SeedUnreachable {
                seed,
                error,
                retry_ms,
            } => format!("Seed {seed} unreachable ({error}); retrying in {retry_ms} ms"),
            Event::PeerListReceived { from, peers } => {
                format!("List of Peers from {from} : {}", list(peers))
            }
            Event::NeighborConnected { addr } => format!("Connected to neighbor {addr}"),
            Event::NeighborLost { addr, reason } => format!("Lost neighbor {addr}: {reason}"),
            Event::ConnectFailed { addr, error } => format!("Cannot connect to {addr}: {error}"),
            Event::GossipCreated { text, .. } => format!("Generated Gossip Message : {text}"),
            Event::GossipReceived {
                text, from, hops, ..
            } => format!("Received Gossip Message : {text} from {from} (hops {hops})"),
            Event::LivenessRequest { from, request_ts } => {
                format!("Liveness Request:{request_ts}:{from}")
            }
            Event::LivenessReply { from, request_ts } => {
                format!("Liveness Reply:{request_ts}:{node}:{from}")
            }
            Event::LivenessMiss { addr, misses } => {
                format!("Liveness check missed by {addr} ({misses} in a row)")
            }
            Event::DeadNodeReported { addr } => format!("Dead Node:{addr}:{now}:{node}"),
            Event::BadFrame { remote, reason } => {
                format!("Protocol error from {remote}, connection closed: {reason}")
            }
            Event::ConnectionsRefused { count, max } => {
                format!("Connection limit of {max} reached: closed {count} new connections")
            }
            Event::AcceptPaused { error } => {
                format!("Cannot accept connections ({error}): accepting paused")
            }
            Event::AcceptResumed { paused_ms } => {
                format!("Accepting connections again after {paused_ms} ms")
            }
            Event::SendQueueFull { remote, queued } => {
                format!("{remote} is not reading: connection closed with {queued} bytes unsent")
            }
        }
    }
}

/// The longest log line rendered before it is cut: gossip `text` and parse errors
/// quoting a frame come from remotes, up to a whole frame long.
pub const MAX_LINE: usize = 1024;

/// `line` made safe for a line-per-event log: control characters, which a remote could
/// use to start a forged line, are escaped, and a line past [`MAX_LINE`] bytes is cut.
fn one_line(line: String) -> String {
    if line.len() <= MAX_LINE && !line.chars().any(char::is_control) {
        return line;
    }
    let mut out = String::with_capacity(MAX_LINE + 40);
    for c in line.chars() {
        if out.len() >= MAX_LINE {
            let _ = write!(out, "... (cut, {} bytes in all)", line.len());
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn list(addrs: &[SocketAddr]) -> String {
    let mut s = String::from("[");
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{a}");
    }
    s.push(']');
    s
}

/// One JSON Lines record: `{"ts":..,"node":..,"event":..,<fields>}`.
#[derive(Serialize)]
pub struct EventRecord<'a> {
    pub ts: Millis,
    pub node: SocketAddr,
    #[serde(flatten)]
    pub event: &'a Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dead_node_line_uses_the_assignment_format() {
        let e = Event::DeadNodeReported {
            addr: a("127.0.0.1:9002"),
        };
        assert_eq!(
            e.text(a("127.0.0.1:9001"), 1234),
            "Dead Node:127.0.0.1:9002:1234:127.0.0.1:9001"
        );
    }

    #[test]
    fn a_newline_in_a_remote_text_cannot_start_a_second_log_line() {
        let e = Event::BadFrame {
            remote: a("127.0.0.1:5000"),
            reason: "unknown variant `x\n1999-01-01 INFO  Dead Node:\r\t`".into(),
        };
        let line = e.text(a("127.0.0.1:9001"), 0);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.contains(r"`x\n1999-01-01 INFO  Dead Node:\r\t`"),
            "{line}"
        );
    }

    #[test]
    fn a_1_mib_gossip_text_is_cut_to_one_short_line() {
        let e = Event::GossipReceived {
            origin: a("127.0.0.1:1"),
            seq: 1,
            text: "é".repeat(1 << 19),
            from: a("127.0.0.1:2"),
            hops: 1,
            created_ts: 0,
        };
        let line = e.text(a("127.0.0.1:9001"), 0);
        assert!(line.len() <= MAX_LINE + 40, "{} bytes", line.len());
        assert!(line.starts_with("Received Gossip Message : éé"));
        assert!(line.ends_with("(cut, 1048628 bytes in all)"), "{line}");
    }

    #[test]
    fn an_ordinary_line_is_left_as_it_is() {
        let e = Event::NeighborConnected {
            addr: a("127.0.0.1:9002"),
        };
        let line = e.text(a("127.0.0.1:9001"), 0);
        assert_eq!(line, "Connected to neighbor 127.0.0.1:9002");
    }

    #[test]
    fn record_flattens_the_event_fields() {
        let e = Event::NeighborLost {
            addr: a("127.0.0.1:9002"),
            reason: "eof".into(),
        };
        let rec = EventRecord {
            ts: 5,
            node: a("127.0.0.1:9001"),
            event: &e,
        };
        assert_eq!(
            serde_json::to_string(&rec).unwrap(),
            r#"{"ts":5,"node":"127.0.0.1:9001","event":"neighbor_lost","addr":"127.0.0.1:9002","reason":"eof"}"#
        );
    }

    #[test]
    fn every_name_matches_its_serde_tag() {
        let e = Event::GossipReceived {
            origin: a("127.0.0.1:1"),
            seq: 1,
            text: "t".into(),
            from: a("127.0.0.1:2"),
            hops: 2,
            created_ts: 0,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], e.name());
    }
}
