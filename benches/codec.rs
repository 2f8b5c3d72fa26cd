//! Frame codec throughput on realistic gossip frames: encoding one frame, and decoding a
//! burst of 1000 frames delivered in one read or in 4 KiB socket-sized reads.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gossipd::codec::{encode_frame, encode_json, FrameDecoder, DEFAULT_MAX_FRAME};

const GOSSIP: &str = r#"{"type":"gossip","origin":"127.0.0.1:9001","seq":7,"ts":1763700000000,"text":"1763700000000:127.0.0.1:9001:7","hops":3}"#;
const BURST: usize = 1000;
const READ_SIZE: usize = 4096;

fn bench_encode(c: &mut Criterion) {
    let msg: serde_json::Value = serde_json::from_str(GOSSIP).expect("bench body is valid JSON");
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    group.bench_function("encode_frame", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(black_box(GOSSIP.as_bytes()), DEFAULT_MAX_FRAME, &mut out)
                .expect("frame fits");
            black_box(out.len())
        })
    });
    group.bench_function("encode_json_value", |b| {
        b.iter(|| {
            out.clear();
            encode_json(black_box(&msg), DEFAULT_MAX_FRAME, &mut out).expect("frame fits");
            black_box(out.len())
        })
    });
    group.finish();
}

fn burst() -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..BURST {
        encode_frame(GOSSIP.as_bytes(), DEFAULT_MAX_FRAME, &mut wire).expect("frame fits");
    }
    wire
}

/// Feeds `wire` to `decoder` in reads of `read_size` bytes, draining frames after each
/// read as the network shell does; returns the number of frames seen.
fn decode(decoder: &mut FrameDecoder, wire: &[u8], read_size: usize) -> usize {
    let mut frames = 0;
    for read in wire.chunks(read_size) {
        decoder.extend(read);
        while let Some(body) = decoder.next_frame().expect("burst is well framed") {
            black_box(body);
            frames += 1;
        }
    }
    frames
}

fn bench_decode(c: &mut Criterion) {
    let wire = burst();
    let bytes = u64::try_from(wire.len()).expect("burst fits in u64");
    let elements = u64::try_from(BURST).expect("burst fits in u64");
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    for (name, throughput) in [
        ("decode_1000_frames", Throughput::Elements(elements)),
        ("decode_1000_bytes", Throughput::Bytes(bytes)),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(throughput);
        group.bench_function("one_read", |b| {
            b.iter(|| decode(&mut decoder, black_box(&wire), wire.len()))
        });
        group.bench_function("4k_reads", |b| {
            b.iter(|| decode(&mut decoder, black_box(&wire), READ_SIZE))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
