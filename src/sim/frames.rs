//! The size on the wire of each frame the simulated nodes send, for the report's
//! `bytes_sent`: the 4-byte header plus the JSON body exactly as `codec::encode_json`
//! would write it.
//!
//! Encoding every frame would cost more than simulating it (a 256-address peer list is
//! 256 address formats), so the length is computed from the fields: digit counts and the
//! fixed text around them. What that cannot do exactly (IPv6 addresses, a payload, text
//! that JSON must escape) is measured by encoding into a byte counter. The unit tests
//! compare both ways on every message kind.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use crate::codec::HEADER_LEN;
use crate::proto::{Gossip, Message};

/// The frame types, by their `type` name, in the order of [`FrameKinds`]' bits.
const KINDS: [&str; 7] = [
    "register",
    "peer_list",
    "hello",
    "gossip",
    "liveness_request",
    "liveness_reply",
    "dead_node",
];

/// A set of frame types, e.g. the ones `--loss` applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameKinds(u8);

impl FrameKinds {
    pub const ALL: FrameKinds = FrameKinds(0x7f);

    fn bit(msg: &Message) -> u8 {
        let i = match msg {
            Message::Register { .. } => 0,
            Message::PeerList { .. } => 1,
            Message::Hello { .. } => 2,
            Message::Gossip(_) => 3,
            Message::LivenessRequest { .. } => 4,
            Message::LivenessReply { .. } => 5,
            Message::DeadNode { .. } => 6,
        };
        1 << i
    }

    pub fn contains(self, msg: &Message) -> bool {
        self.0 & Self::bit(msg) != 0
    }

    /// True when a join's one-off frames (`register`, `peer_list`, `hello`) are among
    /// these.
    pub fn has_handshakes(self) -> bool {
        self.0 & 0b111 != 0
    }
}

impl Default for FrameKinds {
    fn default() -> Self {
        FrameKinds::ALL
    }
}

impl FromStr for FrameKinds {
    type Err = String;
    /// `all`, or type names separated by commas: `gossip,liveness_request`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(FrameKinds::ALL);
        }
        let mut bits = 0;
        for name in s.split(',').map(str::trim) {
            let i = KINDS
                .iter()
                .position(|k| *k == name)
                .ok_or_else(|| format!("'{name}' is not a frame type ({})", KINDS.join(", ")))?;
            bits |= 1 << i;
        }
        Ok(FrameKinds(bits))
    }
}

/// Frame sizes, with the last shared message remembered: a broadcast queues the same
/// `Arc` on each connection in a row. Holding the `Arc` keeps its address from being
/// reused by another message meanwhile.
#[derive(Debug, Default)]
pub(crate) struct FrameSizer {
    last: Option<(Arc<Message>, u64)>,
}

impl FrameSizer {
    pub(crate) fn frame_len(&mut self, msg: &Arc<Message>) -> u64 {
        if let Some((m, len)) = &self.last {
            if Arc::ptr_eq(m, msg) {
                return *len;
            }
        }
        let len = HEADER_LEN as u64 + body_len(msg);
        self.last = Some((Arc::clone(msg), len));
        len
    }
}

/// The JSON body's length in bytes.
pub(crate) fn body_len(msg: &Message) -> u64 {
    computed_len(msg).unwrap_or_else(|| encoded_len(msg))
}

fn encoded_len(msg: &Message) -> u64 {
    let mut count = ByteCount(0);
    // Writing to a counter cannot fail, and messages are plain data.
    let _ = serde_json::to_writer(&mut count, msg);
    count.0
}

/// The length from the fields, or None when only encoding can tell.
fn computed_len(msg: &Message) -> Option<u64> {
    let len = match msg {
        Message::Register { addr } => lit(r#"{"type":"register","addr":""}"#) + addr_len(addr),
        Message::PeerList { peers } => {
            let commas = peers.len().saturating_sub(1) as u64;
            let quoted: u64 = peers.iter().map(|p| addr_len(p) + 2).sum();
            lit(r#"{"type":"peer_list","peers":[]}"#) + quoted + commas
        }
        Message::Hello { addr } => lit(r#"{"type":"hello","addr":""}"#) + addr_len(addr),
        Message::Gossip(g) => gossip_len(g)?,
        Message::LivenessRequest { ts, from } => {
            lit(r#"{"type":"liveness_request","ts":,"from":""}"#) + digits(*ts) + addr_len(from)
        }
        Message::LivenessReply { ts, from, to } => {
            lit(r#"{"type":"liveness_reply","ts":,"from":"","to":""}"#)
                + digits(*ts)
                + addr_len(from)
                + addr_len(to)
        }
        Message::DeadNode { addr, ts, reporter } => {
            lit(r#"{"type":"dead_node","addr":"","ts":,"reporter":""}"#)
                + addr_len(addr)
                + digits(*ts)
                + addr_len(reporter)
        }
    };
    Some(len)
}

fn gossip_len(g: &Gossip) -> Option<u64> {
    let plain = |b: &u8| *b >= 0x20 && *b != b'"' && *b != b'\\';
    if g.payload.is_some() || !g.text.as_bytes().iter().all(plain) {
        return None;
    }
    let fixed = lit(r#"{"type":"gossip","origin":"","seq":,"ts":,"text":"","hops":}"#);
    Some(
        fixed
            + addr_len(&g.origin)
            + digits(g.seq)
            + digits(g.ts)
            + g.text.len() as u64
            + digits(u64::from(g.hops)),
    )
}

fn lit(s: &str) -> u64 {
    s.len() as u64
}

/// Decimal digits of `n`.
fn digits(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0)) + 1
}

/// The length of the address as text (`a.b.c.d:port`), without quotes.
fn addr_len(addr: &SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(a) => {
            let octets: u64 = a.ip().octets().iter().map(|o| digits(u64::from(*o))).sum();
            octets + 3 + 1 + digits(u64::from(a.port()))
        }
        SocketAddr::V6(_) => {
            let mut count = CharCount(0);
            let _ = write!(count, "{addr}");
            count.0
        }
    }
}

/// A writer that only counts bytes.
struct ByteCount(u64);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A formatter target that only counts bytes.
struct CharCount(u64);

impl std::fmt::Write for CharCount {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::gossip_text;

    fn addrs() -> Vec<SocketAddr> {
        [
            "1.2.3.4:5",
            "10.0.0.1:9000",
            "255.255.255.255:65535",
            "0.0.0.0:0",
        ]
        .iter()
        .chain(&["[::1]:9000", "[fe80::1%2]:80", "[::ffff:1.2.3.4]:1"])
        .filter_map(|s| s.parse().ok())
        .collect()
    }

    fn messages() -> Vec<Message> {
        let all = addrs();
        let mut out = vec![
            Message::PeerList { peers: vec![] },
            Message::PeerList { peers: all.clone() },
        ];
        for (i, &a) in all.iter().enumerate() {
            let ts = [0, 9, 10, 1_763_683_200_123, u64::MAX][i % 5];
            let b = all[(i + 1) % all.len()];
            out.push(Message::Register { addr: a });
            out.push(Message::Hello { addr: a });
            out.push(Message::LivenessRequest { ts, from: a });
            out.push(Message::LivenessReply { ts, from: a, to: b });
            out.push(Message::DeadNode {
                addr: a,
                ts,
                reporter: b,
            });
            for (text, hops) in [(gossip_text(ts, a, 7), 1), ("q\"\\\n é".into(), u32::MAX)] {
                let mut g = Gossip {
                    origin: a,
                    seq: ts / 3,
                    ts,
                    text,
                    hops,
                    payload: None,
                };
                out.push(Message::Gossip(g.clone()));
                g.payload = Some(serde_json::json!({"w": [0.5, 1e300], "s": "x\"y"}));
                out.push(Message::Gossip(g));
            }
        }
        out
    }

    #[test]
    fn computed_lengths_match_the_encoder_for_every_message_kind() {
        for m in messages() {
            let mut frame = Vec::new();
            let encoded = crate::codec::encode_json(&m, usize::MAX >> 1, &mut frame);
            assert!(encoded.is_ok(), "{m:?}");
            assert_eq!(
                body_len(&m) + HEADER_LEN as u64,
                frame.len() as u64,
                "{m:?}"
            );
        }
    }

    #[test]
    fn frame_kinds_are_named_by_their_type() {
        let kinds: Result<FrameKinds, _> = "gossip, liveness_reply".parse();
        let Ok(kinds) = kinds else {
            panic!("{kinds:?}")
        };
        for m in messages() {
            let expect = matches!(m, Message::Gossip(_) | Message::LivenessReply { .. });
            assert_eq!(kinds.contains(&m), expect, "{m:?}");
            assert_eq!(kinds.contains(&m), KINDS.contains(&m.kind()) && expect);
            assert!(FrameKinds::ALL.contains(&m));
        }
        assert!("gossip,pigeon".parse::<FrameKinds>().is_err());
        assert_eq!("all".parse(), Ok(FrameKinds::ALL));
    }

    #[test]
    fn a_shared_message_is_measured_once_and_others_afresh() {
        let mut sizer = FrameSizer::default();
        let a = Arc::new(Message::Hello { addr: addrs()[0] });
        let b = Arc::new(Message::PeerList { peers: addrs() });
        let la = sizer.frame_len(&a);
        assert_eq!(sizer.frame_len(&a), la);
        assert!(sizer.frame_len(&b) > la);
        assert_eq!(sizer.frame_len(&a), la);
    }

    #[test]
    fn handshakes_are_register_peer_list_and_hello() {
        let kinds = |s: &str| s.parse::<FrameKinds>().map(FrameKinds::has_handshakes);
        assert_eq!(kinds("all"), Ok(true));
        assert_eq!(kinds("peer_list"), Ok(true));
        assert_eq!(kinds("hello,gossip"), Ok(true));
        assert_eq!(
            kinds("gossip,liveness_request,liveness_reply,dead_node"),
            Ok(false)
        );
    }
}
