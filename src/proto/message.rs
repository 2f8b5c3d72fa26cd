//! Wire messages: the JSON objects carried in frames, as docs/PROTOCOL.md describes them.
//!
//! Pure data and serde only: no I/O. Unknown fields are ignored; a missing field, a wrong
//! type or an unknown `type` is a parse error that the caller turns into a closed connection.

use serde::de::Unexpected;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// One protocol message, tagged by its `"type"` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Peer -> seed: add me (my listening address) to your peer list.
    Register { addr: SocketAddr },
    /// Seed -> peer: the answer to `register`.
    PeerList { peers: Vec<SocketAddr> },
    /// First frame each side sends on a peer-to-peer connection.
    Hello { addr: SocketAddr },
    /// A gossip message, created by `origin` and forwarded once by every peer.
    Gossip(Gossip),
    /// Are you alive? Answered on the same connection.
    LivenessRequest { ts: u64, from: SocketAddr },
    /// The answer to a liveness request: `ts` and `from` copied, `to` the replier.
    LivenessReply {
        ts: u64,
        from: SocketAddr,
        to: SocketAddr,
    },
    /// Peer -> seed: `addr` missed its liveness checks.
    DeadNode {
        addr: SocketAddr,
        ts: u64,
        reporter: SocketAddr,
    },
}

/// The gossip message proper. Its identity is (`origin`, `seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gossip {
    pub origin: SocketAddr,
    pub seq: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The assignment's `<timestamp>:<IP:PORT>:<Msg#>`.
    pub text: String,
    /// Links crossed so far: the origin sends 1, every forward adds 1.
    pub hops: u32,
    /// Carried along untouched (model parameters in gossip learning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl Gossip {
    /// A message as gossipd makes it: the standard text, no payload.
    pub fn standard(origin: SocketAddr, seq: u64, ts: u64, hops: u32) -> Self {
        Gossip {
            origin,
            seq,
            ts,
            text: gossip_text(ts, origin, seq),
            hops,
            payload: None,
        }
    }
}

impl Message {
    /// Parses one frame body. (A two-pass parse, tag first then the variant's struct,
    /// was measured at 10% more instructions per gossip frame than this derive.)
    ///
    /// serde's tagged enums also take a JSON array led by the tag
    /// (`["hello","127.0.0.1:1"]`); the protocol allows only an object, so an array is
    /// refused before serde sees it.
    pub fn from_frame(body: &[u8]) -> Result<Message, serde_json::Error> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            let expected = &"a JSON object";
            return Err(serde::de::Error::invalid_type(Unexpected::Seq, expected));
        }
        serde_json::from_slice(body)
    }

    /// The `type` name, for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Register { .. } => "register",
            Message::PeerList { .. } => "peer_list",
            Message::Hello { .. } => "hello",
            Message::Gossip(_) => "gossip",
            Message::LivenessRequest { .. } => "liveness_request",
            Message::LivenessReply { .. } => "liveness_reply",
            Message::DeadNode { .. } => "dead_node",
        }
    }
}

/// The assignment's message text: `<timestamp>:<IP:PORT>:<Msg#>`.
pub fn gossip_text(ts: u64, origin: SocketAddr, seq: u64) -> String {
    format!("{ts}:{origin}:{seq}")
}

/// Whether `text` is [`gossip_text`]`(ts, origin, seq)`, found without building it. A
/// relaying peer asks this of every message it first sees: for an IPv4 origin (all of
/// them, in practice) the digits are matched one number at a time, without the
/// formatter.
pub fn is_gossip_text(text: &str, ts: u64, origin: SocketAddr, seq: u64) -> bool {
    if let SocketAddr::V4(v4) = origin {
        let mut rest = Rest(text.as_bytes());
        let [a, b, c, d] = v4.ip().octets();
        let port = u64::from(v4.port());
        let ip = [a, b, c, d].map(u64::from);
        return rest.number(ts)
            && rest.take(b":")
            && ip
                .iter()
                .enumerate()
                .all(|(i, &o)| (i == 0 || rest.take(b".")) && rest.number(o))
            && rest.take(b":")
            && rest.number(port)
            && rest.take(b":")
            && rest.number(seq)
            && rest.0.is_empty();
    }
    let mut rest = Unmatched(Some(text));
    let written = write!(rest, "{ts}:{origin}:{seq}").is_ok();
    written && rest.0 == Some("")
}

/// The bytes of a text yet to be matched.
struct Rest<'a>(&'a [u8]);

impl Rest<'_> {
    /// Matches `piece` and moves past it; false when the text does not go on with it.
    fn take(&mut self, piece: &[u8]) -> bool {
        match self.0.strip_prefix(piece) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    /// Matches `n` in decimal, as `Display` writes it: the digits that follow, with no
    /// leading zero, read as a number equal to `n`.
    fn number(&mut self, n: u64) -> bool {
        let len = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (digits, rest) = self.0.split_at(len);
        let canonical = matches!(digits, [_] | [b'1'..=b'9', ..]);
        let value = digits.iter().try_fold(0u64, |v, &d| {
            v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        self.0 = rest;
        canonical && value == Some(n)
    }
}

/// What a formatter has yet to match; `None` once a piece differed.
struct Unmatched<'a>(Option<&'a str>);

impl std::fmt::Write for Unmatched<'_> {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        self.0 = self.0.and_then(|rest| rest.strip_prefix(piece));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_text_is_recognised_exactly() {
        let a = addr("10.0.0.1:9001");
        let text = gossip_text(1700, a, 3);
        assert_eq!(text, "1700:10.0.0.1:9001:3");
        assert!(is_gossip_text(&text, 1700, a, 3));
        for other in [
            "1700:10.0.0.1:9001:",
            "1700:10.0.0.1:9001:33",
            "",
            "x1700:10.0.0.1:9001:3",
            "01700:10.0.0.1:9001:3",
            "+1700:10.0.0.1:9001:3",
            "1700:10.0.0.01:9001:3",
            "1700:10.0.0.1:9001:03",
            "1700:10.0.0.1.9001:3",
            "1700:10.0.0.1:9001:3:",
        ] {
            assert!(!is_gossip_text(other, 1700, a, 3), "{other}");
        }
        assert!(!is_gossip_text(&text, 1701, a, 3));
        assert!(!is_gossip_text(&text, 1700, a, 4));
        assert!(!is_gossip_text(&text, 1700, addr("10.0.0.1:9002"), 3));
    }

    proptest::proptest! {
        /// The digit matcher agrees with the formatter on every IPv4 text and on texts
        /// one value off.
        #[test]
        fn the_v4_matcher_agrees_with_the_formatter(
            ts in proptest::prelude::any::<u64>(),
            ip in proptest::prelude::any::<[u8; 4]>(),
            port in proptest::prelude::any::<u16>(),
            seq in proptest::prelude::any::<u64>(),
            other in proptest::prelude::any::<(u64, [u8; 4], u16, u64)>(),
            cut in 0usize..60,
        ) {
            let origin = SocketAddr::from((ip, port));
            let text = gossip_text(ts, origin, seq);
            proptest::prop_assert!(is_gossip_text(&text, ts, origin, seq));
            let (ts2, ip2, port2, seq2) = other;
            let other = gossip_text(ts2, SocketAddr::from((ip2, port2)), seq2);
            proptest::prop_assert_eq!(is_gossip_text(&other, ts, origin, seq), other == text);
            let short = text.get(..cut.min(text.len() - 1)).unwrap_or_default();
            proptest::prop_assert!(!is_gossip_text(short, ts, origin, seq));
            let long = format!("{text}0");
            proptest::prop_assert!(!is_gossip_text(&long, ts, origin, seq));
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn register_round_trips_with_its_type_tag() {
        let m = Message::Register {
            addr: addr("127.0.0.1:9001"),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"type":"register","addr":"127.0.0.1:9001"}"#);
        assert_eq!(Message::from_frame(json.as_bytes()).unwrap(), m);
    }

    #[test]
    fn gossip_without_payload_omits_the_field() {
        let m = Message::Gossip(Gossip {
            origin: addr("127.0.0.1:9001"),
            seq: 3,
            ts: 17,
            text: gossip_text(17, addr("127.0.0.1:9001"), 3),
            hops: 1,
            payload: None,
        });
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"type":"gossip","origin":"127.0.0.1:9001","seq":3,"ts":17,"text":"17:127.0.0.1:9001:3","hops":1}"#
        );
    }

    #[test]
    fn every_message_round_trips_through_from_frame() {
        let a = addr("127.0.0.1:9001");
        let b = addr("[::1]:9002");
        let all = [
            Message::Register { addr: a },
            Message::PeerList { peers: vec![a, b] },
            Message::Hello { addr: b },
            Message::Gossip(Gossip {
                origin: a,
                seq: 2,
                ts: 3,
                text: "3:127.0.0.1:9001:2".into(),
                hops: 4,
                payload: Some(serde_json::json!([1.5, {"k": null}])),
            }),
            Message::LivenessRequest { ts: 5, from: a },
            Message::LivenessReply {
                ts: 5,
                from: a,
                to: b,
            },
            Message::DeadNode {
                addr: b,
                ts: 6,
                reporter: a,
            },
        ];
        for m in all {
            let json = serde_json::to_vec(&m).unwrap();
            assert_eq!(Message::from_frame(&json).unwrap(), m);
        }
    }

    #[test]
    fn a_duplicated_or_null_field_is_an_error() {
        let dup = br#"{"type":"hello","addr":"127.0.0.1:1","addr":"127.0.0.1:2"}"#;
        assert!(Message::from_frame(dup).is_err());
        assert!(Message::from_frame(br#"{"type":"hello","addr":null}"#).is_err());
        assert!(
            Message::from_frame(br#"{"type":"hello","type":"hello","addr":"127.0.0.1:1"}"#)
                .is_err()
        );
    }

    #[test]
    fn an_array_led_by_a_type_name_is_not_a_message() {
        for body in [
            &br#"["hello","127.0.0.1:1"]"#[..],
            br#" ["liveness_request",1,"127.0.0.1:1"]"#,
            br#"["gossip","127.0.0.1:1",1,1,"t",1]"#,
        ] {
            let err = Message::from_frame(body).unwrap_err();
            assert!(err.is_data(), "{err}");
            assert!(err.to_string().contains("expected a JSON object"), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let m = Message::from_frame(br#"{"type":"hello","addr":"10.0.0.1:1","x":[1,2]}"#);
        assert!(matches!(m, Ok(Message::Hello { .. })));
    }

    #[test]
    fn payload_is_carried_untouched() {
        let body = br#"{"type":"gossip","origin":"127.0.0.1:1","seq":1,"ts":1,"text":"t","hops":1,"payload":{"w":[0.5,1.5]}}"#;
        let Ok(Message::Gossip(g)) = Message::from_frame(body) else {
            panic!("not gossip")
        };
        assert_eq!(g.payload, Some(serde_json::json!({"w":[0.5,1.5]})));
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for body in [
            &b"[1,2]"[..],
            b"{}",
            b"{\"type\":\"nope\"}",
            b"{\"type\":\"hello\"}",
            b"{\"type\":\"hello\",\"addr\":\"nohost\"}",
            b"{\"type\":\"gossip\",\"origin\":\"1.2.3.4:5\",\"seq\":-1,\"ts\":1,\"text\":\"\",\"hops\":0}",
            b"\xff\xfe",
            b"{\"type\":\"hello\",\"addr\":\"\xff\"}",
        ] {
            assert!(Message::from_frame(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn deeply_nested_payload_is_rejected() {
        let mut body = br#"{"type":"gossip","origin":"127.0.0.1:1","seq":1,"ts":1,"text":"t","hops":1,"payload":"#.to_vec();
        body.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(Message::from_frame(&body).is_err());
    }
}
