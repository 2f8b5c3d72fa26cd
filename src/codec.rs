//! Length-prefixed frame codec: owns the wire framing (a 4-byte big-endian body length,
//! then the body) and the per-connection decode buffer. It is pure: no sockets, no clock,
//! and it never parses the JSON inside a body.
//!
//! A peer controls the length prefix, so the length is validated as soon as the 4 header
//! bytes are in and before any memory is reserved for the body; the buffer never grows
//! past the announced frame plus what the caller actually handed to [`FrameDecoder::extend`].

/// Size of the length prefix in front of every frame body.
pub const HEADER_LEN: usize = 4;

/// Largest frame body accepted unless the caller chooses otherwise.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20; // 1 MiB

/// Capacity an idle decoder may keep: thousands of idle connections each hold a decoder,
/// so a burst that grew one buffer must not stay pinned after it drains.
const IDLE_CAPACITY: usize = 512;

/// A length prefix outside `1..=max_frame`: the peer sent junk or broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame (length prefix 0)")]
    Empty,
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLong { len: u64, max: usize },
}

/// Accumulates bytes read from one connection and yields complete frame bodies.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`; consumed bytes are drained lazily so
    /// decoding many small frames stays O(bytes).
    pos: usize,
    max_frame: usize,
    /// Set by the first bad length prefix; the stream has lost framing for good.
    poisoned: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder accepting bodies of `1..=max_frame` bytes (the wire format caps the
    /// effective maximum at `u32::MAX`).
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            max_frame,
            poisoned: None,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Appends bytes just read from the connection.
    ///
    /// Growth is exact (never beyond the current frame or the bytes given), so drain
    /// [`next_frame`](Self::next_frame) after each read rather than piling up reads.
    /// Once poisoned the decoder drops input: the connection is going away and its
    /// buffer must not keep growing meanwhile.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.poisoned.is_some() || bytes.is_empty() {
            return;
        }
        let additional = bytes.len().max(self.rest_of_frame(bytes));
        self.compact(additional);
        self.buf.reserve_exact(additional);
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body; `Ok(None)` while more bytes are needed.
    /// After an `Err` the decoder is poisoned: every later call returns the same `Err`,
    /// and only the offending header stays buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        self.release_if_idle();
        let held = self.buf.get(self.pos..).unwrap_or_default();
        let Some(header) = header_of(held, &[]) else {
            return Ok(None);
        };
        let body_len = match check_len(u64::from(u32::from_be_bytes(header)), self.max_frame) {
            Ok(len) => len,
            Err(err) => return Err(self.poison(header, err)),
        };
        let start = self.pos + HEADER_LEN;
        let end = start.saturating_add(body_len);
        let Some(body) = self.buf.get(start..end) else {
            return Ok(None);
        };
        self.pos = end;
        Ok(Some(body))
    }

    /// Bytes held that do not yet form a complete frame (0 = at a frame boundary).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes the buffer has reserved, for tests that bound the decoder's memory.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes still missing from the current frame once `incoming` is appended, counted
    /// from the end of the held bytes; 0 while the header is incomplete or invalid, so
    /// nothing is reserved on the strength of a bad length.
    fn rest_of_frame(&self, incoming: &[u8]) -> usize {
        let held = self.buf.get(self.pos..).unwrap_or_default();
        header_of(held, incoming)
            .and_then(|h| check_len(u64::from(u32::from_be_bytes(h)), self.max_frame).ok())
            .map_or(0, |body_len| {
                (HEADER_LEN.saturating_add(body_len)).saturating_sub(held.len())
            })
    }

    /// Drops consumed bytes when they outweigh the held ones (amortised O(1) per byte) or
    /// when the append would reallocate anyway, so the new allocation holds no dead bytes.
    fn compact(&mut self, additional: usize) {
        let held = self.buffered();
        let must_grow = self.buf.capacity() - self.buf.len() < additional;
        if self.pos > 0 && (self.pos >= held || must_grow) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Keeps only the offending header: nothing after it can be framed, and a dying
    /// connection should not pin a large buffer.
    fn poison(&mut self, header: [u8; HEADER_LEN], err: FrameError) -> FrameError {
        self.buf = header.to_vec();
        self.pos = 0;
        self.poisoned = Some(err.clone());
        err
    }

    fn release_if_idle(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.buf.shrink_to(IDLE_CAPACITY);
        }
    }
}

/// The first `HEADER_LEN` bytes of `held` followed by `incoming`, if there are that many.
fn header_of(held: &[u8], incoming: &[u8]) -> Option<[u8; HEADER_LEN]> {
    let mut bytes = held.iter().chain(incoming).copied();
    let mut header = [0; HEADER_LEN];
    for slot in &mut header {
        *slot = bytes.next()?;
    }
    Some(header)
}

/// Validates a body length against `1..=max_frame` and the 32-bit wire field.
fn check_len(len: u64, max_frame: usize) -> Result<usize, FrameError> {
    let too_long = FrameError::TooLong {
        len,
        max: max_frame,
    };
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > u64::from(u32::MAX) {
        return Err(too_long);
    }
    match usize::try_from(len) {
        Ok(n) if n <= max_frame => Ok(n),
        _ => Err(too_long),
    }
}

/// The length prefix for a body of `len` bytes.
fn header_for(len: usize, max_frame: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    let checked = check_len(len, max_frame)?;
    // check_len caps at u32::MAX, so this conversion cannot fail.
    let wire = u32::try_from(checked).map_err(|_| FrameError::TooLong {
        len,
        max: max_frame,
    })?;
    Ok(wire.to_be_bytes())
}

/// Appends header + body to `out`. Err if body is empty or longer than max_frame.
pub fn encode_frame(body: &[u8], max_frame: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let header = header_for(body.len(), max_frame)?;
    out.reserve(HEADER_LEN + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    Ok(())
}

/// Serializes `msg` as JSON straight into `out` after a 4-byte header placeholder, then
/// patches the length (no intermediate allocation). On error `out` is left as it was.
pub fn encode_json<T: serde::Serialize + ?Sized>(
    msg: &T,
    max_frame: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_json_frame(msg, max_frame, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_json_frame<T: serde::Serialize + ?Sized>(
    msg: &T,
    max_frame: usize,
    out: &mut Vec<u8>,
    start: usize,
) -> Result<(), EncodeError> {
    out.extend_from_slice(&[0; HEADER_LEN]);
    serde_json::to_writer(&mut *out, msg)?;
    let body_start = start + HEADER_LEN;
    let header = header_for(out.len() - body_start, max_frame)?;
    if let Some(slot) = out.get_mut(start..body_start) {
        slot.copy_from_slice(&header);
    }
    Ok(())
}

/// Why an outgoing message could not be framed; always our own bug, never the peer's.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("cannot serialize frame: {0}")]
    Json(#[from] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY: &[u8] = br#"{"type":"ping","seq":1}"#;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(body, DEFAULT_MAX_FRAME, &mut out).unwrap();
        out
    }

    fn drain(dec: &mut FrameDecoder) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut bodies = Vec::new();
        while let Some(body) = dec.next_frame()? {
            bodies.push(body.to_vec());
        }
        Ok(bodies)
    }

    /// Cuts `stream` into chunks whose sizes cycle through `sizes` (each at least 1).
    fn cut<'a>(mut stream: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        for &size in sizes.iter().cycle() {
            if stream.is_empty() {
                break;
            }
            let (chunk, rest) = stream.split_at(size.clamp(1, stream.len()));
            chunks.push(chunk);
            stream = rest;
        }
        chunks
    }

    #[test]
    fn frame_fed_byte_by_byte_is_decoded_once_at_its_last_byte() {
        let wire = framed(BODY);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let (last, init) = wire.split_last().unwrap();
        for byte in init {
            dec.extend(std::slice::from_ref(byte));
            assert_eq!(dec.next_frame(), Ok(None));
        }
        dec.extend(&[*last]);
        assert_eq!(dec.next_frame(), Ok(Some(BODY)));
        assert_eq!(dec.next_frame(), Ok(None));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn several_frames_in_one_extend_are_yielded_in_order() {
        let bodies: [&[u8]; 3] = [b"a", b"{\"seq\":2}", b"third"];
        let wire: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(&wire);
        assert_eq!(drain(&mut dec).unwrap(), bodies.map(<[u8]>::to_vec));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn frame_split_across_extends_at_every_position_is_decoded() {
        let wire = [framed(BODY), framed(b"next")].concat();
        for split in 0..=wire.len() {
            let (head, tail) = wire.split_at(split);
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            dec.extend(head);
            let mut bodies = drain(&mut dec).unwrap();
            assert_eq!(
                dec.buffered() + bodies.iter().map(|b| b.len() + 4).sum::<usize>(),
                split
            );
            dec.extend(tail);
            bodies.extend(drain(&mut dec).unwrap());
            assert_eq!(
                bodies,
                [BODY.to_vec(), b"next".to_vec()],
                "split at {split}"
            );
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn zero_length_prefix_is_rejected_as_empty() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(&[0, 0, 0, 0, b'x']);
        assert_eq!(dec.next_frame(), Err(FrameError::Empty));
    }

    #[test]
    fn length_at_exactly_the_maximum_is_accepted() {
        let body = vec![b'x'; 64];
        let mut out = Vec::new();
        encode_frame(&body, 64, &mut out).unwrap();
        let mut dec = FrameDecoder::new(64);
        dec.extend(&out);
        assert_eq!(dec.next_frame(), Ok(Some(&body[..])));
    }

    #[test]
    fn length_over_the_maximum_is_rejected_before_the_body_arrives() {
        let mut dec = FrameDecoder::new(64);
        dec.extend(&65u32.to_be_bytes());
        assert!(dec.buf.capacity() < 65, "reserved for an invalid body");
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLong { len: 65, max: 64 })
        );
        assert_eq!(dec.buffered(), HEADER_LEN);
        assert!(dec.buf.capacity() < 65, "kept room for a rejected body");
    }

    #[test]
    fn all_ones_length_is_rejected_without_reserving_the_body() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(&[0xFF; HEADER_LEN]);
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLong {
                len: u64::from(u32::MAX),
                max: DEFAULT_MAX_FRAME
            })
        );
        assert_eq!(dec.buffered(), HEADER_LEN);
        assert!(dec.buf.capacity() < IDLE_CAPACITY);
    }

    #[test]
    fn error_is_sticky_and_later_bytes_are_dropped() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(&[framed(BODY), vec![0; 100]].concat());
        assert_eq!(dec.next_frame(), Ok(Some(BODY)));
        assert_eq!(dec.next_frame(), Err(FrameError::Empty));
        dec.extend(&framed(BODY));
        assert_eq!(dec.next_frame(), Err(FrameError::Empty));
        assert_eq!(dec.next_frame(), Err(FrameError::Empty));
        assert_eq!(dec.buffered(), HEADER_LEN);
    }

    #[test]
    fn http_request_is_rejected_as_too_long_not_a_panic() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(b"GET / HTTP/1.1\r\n");
        let len = u64::from(u32::from_be_bytes(*b"GET "));
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLong {
                len,
                max: DEFAULT_MAX_FRAME
            })
        );
    }

    #[test]
    fn large_frame_is_reserved_once_for_its_announced_length() {
        let body = vec![b'x'; 100_000];
        let wire = framed(&body);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut chunks = cut(&wire, &[1500]).into_iter();
        dec.extend(chunks.next().unwrap());
        let (ptr, cap) = (dec.buf.as_ptr(), dec.buf.capacity());
        assert!(cap >= wire.len());
        for chunk in chunks {
            assert_eq!(dec.next_frame(), Ok(None));
            dec.extend(chunk);
        }
        assert_eq!(dec.buf.as_ptr(), ptr, "buffer reallocated mid-frame");
        assert_eq!(dec.next_frame(), Ok(Some(&body[..])));
    }

    #[test]
    fn idle_decoder_releases_capacity_above_4_kib() {
        let wire = framed(&vec![b'x'; 50_000]);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(&wire);
        assert_eq!(drain(&mut dec).unwrap().len(), 1);
        assert_eq!(dec.buffered(), 0);
        assert!(dec.buf.capacity() <= IDLE_CAPACITY);
    }

    #[test]
    fn many_small_frames_do_not_pile_up_consumed_bytes() {
        let wire: Vec<u8> = (0..10_000).flat_map(|_| framed(BODY)).collect();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut count = 0;
        for chunk in cut(&wire, &[1000, 7, 333]) {
            dec.extend(chunk);
            count += drain(&mut dec).unwrap().len();
            assert!(dec.buf.len() <= 2 * 1000 + 2 * framed(BODY).len());
        }
        assert_eq!(count, 10_000);
    }

    #[test]
    fn encode_frame_round_trips_through_the_decoder() {
        let mut out = b"prefix".to_vec();
        encode_frame(BODY, DEFAULT_MAX_FRAME, &mut out).unwrap();
        let (prefix, wire) = out.split_at(6);
        assert_eq!(prefix, b"prefix");
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(wire);
        assert_eq!(dec.next_frame(), Ok(Some(BODY)));
    }

    #[test]
    fn encode_json_round_trips_through_the_decoder() {
        let msg = serde_json::json!({"type": "gossip", "seq": 7, "text": "hi"});
        let mut out = Vec::new();
        encode_json(&msg, DEFAULT_MAX_FRAME, &mut out).unwrap();
        encode_json(&msg, DEFAULT_MAX_FRAME, &mut out).unwrap();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.extend(&out);
        for _ in 0..2 {
            let body = dec.next_frame().unwrap().unwrap();
            let back: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(back, msg);
        }
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn encode_frame_rejects_empty_and_oversize_bodies() {
        let mut out = b"kept".to_vec();
        assert_eq!(encode_frame(b"", 64, &mut out), Err(FrameError::Empty));
        assert_eq!(
            encode_frame(&[b'x'; 65], 64, &mut out),
            Err(FrameError::TooLong { len: 65, max: 64 })
        );
        assert_eq!(out, b"kept");
    }

    #[test]
    fn encode_json_leaves_out_untouched_when_the_frame_is_too_long() {
        let mut out = b"kept".to_vec();
        let err = encode_json(&"x".repeat(100), 64, &mut out).unwrap_err();
        assert!(matches!(
            err,
            EncodeError::Frame(FrameError::TooLong { len: 102, max: 64 })
        ));
        assert_eq!(out, b"kept");
    }

    struct Unserializable;

    impl serde::Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }

    #[test]
    fn encode_json_leaves_out_untouched_when_serialization_fails_midway() {
        let mut out = b"kept".to_vec();
        let msg = (1, "half written", Unserializable);
        let err = encode_json(&msg, DEFAULT_MAX_FRAME, &mut out).unwrap_err();
        assert!(matches!(err, EncodeError::Json(_)));
        assert_eq!(out, b"kept");
    }

    /// A stream of valid frames (some empty, some over the limit) mixed with junk.
    fn segment(max_frame: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..=max_frame + 8).prop_map(|body| {
                let len = u32::try_from(body.len()).unwrap();
                [&len.to_be_bytes()[..], &body].concat()
            }),
            1 => prop::collection::vec(any::<u8>(), 0..16),
        ]
    }

    fn stream() -> impl Strategy<Value = (usize, Vec<u8>)> {
        (1usize..200).prop_flat_map(|max| {
            let segments = prop::collection::vec(segment(max), 0..20);
            (Just(max), segments.prop_map(|s| s.concat()))
        })
    }

    proptest! {
        #[test]
        fn random_streams_in_random_chunks_never_panic_and_stay_bounded(
            (max, stream) in stream(),
            sizes in prop::collection::vec(1usize..300, 1..20),
        ) {
            let mut dec = FrameDecoder::new(max);
            let mut largest_chunk = 0;
            for chunk in cut(&stream, &sizes) {
                largest_chunk = largest_chunk.max(chunk.len());
                dec.extend(chunk);
                while let Ok(Some(body)) = dec.next_frame() {
                    prop_assert!((1..=max).contains(&body.len()));
                }
                prop_assert!(
                    dec.buffered() <= max + HEADER_LEN + chunk.len(),
                    "buffered {} with max {} after a chunk of {}",
                    dec.buffered(), max, chunk.len()
                );
                prop_assert!(
                    dec.buf.capacity() <= IDLE_CAPACITY.max(max + HEADER_LEN + largest_chunk)
                );
            }
        }

        #[test]
        fn encoded_bodies_decode_back_exactly_under_random_chunking(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..500), 0..20),
            sizes in prop::collection::vec(1usize..700, 1..20),
        ) {
            let mut wire = Vec::new();
            for body in &bodies {
                encode_frame(body, 500, &mut wire).unwrap();
            }
            let mut dec = FrameDecoder::new(500);
            let mut decoded = Vec::new();
            for chunk in cut(&wire, &sizes) {
                dec.extend(chunk);
                decoded.extend(drain(&mut dec).unwrap());
            }
            prop_assert_eq!(decoded, bodies);
            prop_assert_eq!(dec.buffered(), 0);
        }
    }
}
