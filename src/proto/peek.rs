//! A look at a gossip frame's identity without parsing it: most gossip frames a peer
//! receives are duplicates (one first receipt for every six or seven frames), and the
//! seen-cache can drop them from (`origin`, `seq`, `ts`) alone, before the JSON parse that
//! is most of the cost of a frame.
//!
//! Only the exact prefix gossipd's own encoder writes is recognised:
//! `{"type":"gossip","origin":"ADDR","seq":N,"ts":N,` (or `}` after `ts`). Any other
//! spelling (other field order, spaces, escapes) gives None, and the frame is parsed in
//! full as before.

use std::net::SocketAddr;

const PREFIX: &[u8] = br#"{"type":"gossip","origin":""#;

/// A gossip frame's identity and creation time, read from its body's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipId {
    pub origin: SocketAddr,
    pub seq: u64,
    pub ts: u64,
}

/// The identity of the gossip message in `body`, if it starts as gossipd writes it.
pub fn peek_gossip(body: &[u8]) -> Option<GossipId> {
    let rest = body.strip_prefix(PREFIX)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let (addr, rest) = rest.split_at(end);
    let origin = std::str::from_utf8(addr).ok()?.parse().ok()?;
    let rest = rest.strip_prefix(br#"","seq":"#)?;
    let (seq, rest) = number(rest)?;
    let rest = rest.strip_prefix(br#","ts":"#)?;
    let (ts, rest) = number(rest)?;
    matches!(rest.first(), Some(b',' | b'}')).then_some(GossipId { origin, seq, ts })
}

/// A JSON unsigned integer at the start of `s` (no sign, no leading zero, fits in u64).
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, rest) = s.split_at(n);
    if n == 0 || (n > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    let value = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Gossip, Message};

    fn body(msg: &Message) -> Vec<u8> {
        serde_json::to_vec(msg).unwrap_or_default()
    }

    fn gossip(origin: &str, seq: u64, ts: u64, text: &str) -> Message {
        Message::Gossip(Gossip {
            origin: origin.parse().unwrap(),
            seq,
            ts,
            text: text.into(),
            hops: 3,
            payload: Some(serde_json::json!({"w": [1.5, 2]})),
        })
    }

    #[test]
    fn what_the_encoder_writes_is_read_back() {
        for (origin, seq, ts) in [
            ("127.0.0.1:9000", 0, 0),
            ("10.1.2.3:65535", u64::MAX, 1_763_683_200_123),
            ("[::1]:9001", 42, 7),
        ] {
            let got = peek_gossip(&body(&gossip(origin, seq, ts, "a \"quoted\" text")));
            let want = GossipId {
                origin: origin.parse().unwrap(),
                seq,
                ts,
            };
            assert_eq!(got, Some(want), "{origin} {seq} {ts}");
        }
    }

    #[test]
    fn any_other_spelling_is_left_to_the_full_parse() {
        let other = [
            r#"{"type":"gossip","seq":1,"origin":"127.0.0.1:1","ts":2,"text":"","hops":1}"#,
            r#"{"type": "gossip","origin":"127.0.0.1:1","seq":1,"ts":2}"#,
            r#"{"type":"gossip","origin":"127.0.0.1:1","seq":01,"ts":2}"#,
            r#"{"type":"gossip","origin":"127.0.0.1:1","seq":-1,"ts":2}"#,
            r#"{"type":"gossip","origin":"127.0.0.1:1","seq":1.5,"ts":2}"#,
            r#"{"type":"gossip","origin":"127.0.0.1:1","seq":1,"ts":2"#,
            r#"{"type":"gossip","origin":"127.0.0.1:1","seq":99999999999999999999,"ts":2}"#,
            r#"{"type":"gossip","origin":"not an address","seq":1,"ts":2}"#,
            r#"{"type":"gossip","origin":"127.0.0.1:1\"","seq":1,"ts":2}"#,
            r#"{"type":"hello","addr":"127.0.0.1:1"}"#,
            "",
        ];
        for body in other {
            assert_eq!(peek_gossip(body.as_bytes()), None, "{body}");
        }
    }
}
