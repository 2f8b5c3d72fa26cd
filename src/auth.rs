//! Frame authentication with a shared cluster key (`--cluster-key FILE`).
//!
//! With a key, every frame's payload is the JSON body followed by a 32-byte
//! HMAC-SHA256 tag over that body, and the length prefix counts both. A frame whose tag is
//! missing or wrong is rejected (compared in constant time by the `hmac` crate), so a host
//! without the key can neither join, gossip nor report. Pure: bytes in, bytes out.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

use crate::codec::HEADER_LEN;

/// Bytes of the tag that follows the body.
pub const TAG_LEN: usize = 32;
/// The shortest key accepted.
pub const MIN_KEY_LEN: usize = 16;

/// Why a key or a frame is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: cannot read the cluster key: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cluster key has {len} bytes; use at least {MIN_KEY_LEN} (e.g. head -c 32 /dev/urandom | base64 > key)")]
    KeyTooShort { len: usize },
    #[error("frame of {len} bytes has no room for a {TAG_LEN}-byte authentication tag")]
    NoTag { len: usize },
    #[error("authentication tag does not match: wrong or missing cluster key")]
    BadTag,
}

/// The shared key, ready to tag and check frames.
#[derive(Clone)]
pub struct ClusterKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A key from raw bytes (at least [`MIN_KEY_LEN`]).
    pub fn from_bytes(key: &[u8]) -> Result<Self, AuthError> {
        if key.len() < MIN_KEY_LEN {
            return Err(AuthError::KeyTooShort { len: key.len() });
        }
        let mac = Hmac::<Sha256>::new_from_slice(key)
            .map_err(|_| AuthError::KeyTooShort { len: key.len() })?;
        Ok(ClusterKey { mac })
    }

    /// Reads a key file; trailing whitespace (a final newline) is not part of the key.
    pub fn read(path: &Path) -> Result<Self, AuthError> {
        let bytes = std::fs::read(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        Self::from_bytes(bytes.get(..end).unwrap_or_default())
    }

    /// The tag of `body`.
    pub fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Appends the tag to the frame that starts at `frame_start` in `out` (header and
    /// body already written) and fixes its length prefix.
    pub fn seal(&self, out: &mut Vec<u8>, frame_start: usize) {
        let body_start = frame_start + HEADER_LEN;
        let Some(body) = out.get(body_start..) else {
            return;
        };
        let tag = self.tag(body);
        let len = (body.len() + TAG_LEN) as u32;
        out.extend_from_slice(&tag);
        if let Some(header) = out.get_mut(frame_start..body_start) {
            header.copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Checks a received frame payload (body then tag) and returns the body.
    pub fn open<'a>(&self, payload: &'a [u8]) -> Result<&'a [u8], AuthError> {
        let split = payload
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(AuthError::NoTag { len: payload.len() })?;
        let (body, tag) = payload.split_at(split);
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| AuthError::BadTag)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_frame, FrameDecoder};

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes(&[b; 32]).unwrap()
    }

    fn sealed(k: &ClusterKey, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0xAA]; // a frame need not start the buffer
        encode_frame(body, 1 << 20, &mut out).unwrap();
        k.seal(&mut out, 1);
        out.split_off(1)
    }

    #[test]
    fn a_sealed_frame_decodes_and_opens_to_its_body() {
        let k = key(1);
        let frame = sealed(&k, br#"{"type":"hello","addr":"127.0.0.1:1"}"#);
        let mut dec = FrameDecoder::new(1 << 20);
        dec.extend(&frame);
        let payload = dec.next_frame().unwrap().unwrap();
        assert_eq!(
            k.open(payload).unwrap(),
            br#"{"type":"hello","addr":"127.0.0.1:1"}"#
        );
    }

    #[test]
    fn a_frame_tagged_with_another_key_is_refused() {
        let frame = sealed(&key(1), b"{}");
        assert!(matches!(
            key(2).open(&frame[HEADER_LEN..]),
            Err(AuthError::BadTag)
        ));
    }

    #[test]
    fn a_changed_body_is_refused() {
        let k = key(1);
        let mut frame = sealed(&k, b"{\"type\":\"hello\"}");
        frame[HEADER_LEN + 3] ^= 1;
        assert!(matches!(
            k.open(&frame[HEADER_LEN..]),
            Err(AuthError::BadTag)
        ));
    }

    #[test]
    fn an_untagged_frame_is_refused() {
        let k = key(1);
        assert!(matches!(k.open(b"{}"), Err(AuthError::NoTag { len: 2 })));
        let body = [b' '; 40];
        assert!(matches!(k.open(&body), Err(AuthError::BadTag)));
    }

    #[test]
    fn short_keys_are_refused_and_key_files_lose_their_final_newline() {
        assert!(matches!(
            ClusterKey::from_bytes(b"short"),
            Err(AuthError::KeyTooShort { len: 5 })
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, b"0123456789abcdef0123\n").unwrap();
        let from_file = ClusterKey::read(&path).unwrap();
        let direct = ClusterKey::from_bytes(b"0123456789abcdef0123").unwrap();
        assert_eq!(from_file.tag(b"x"), direct.tag(b"x"));
    }
}
