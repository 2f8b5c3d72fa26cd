//! Timer wheel cost at simulator scale: inserting, cancelling and expiring 1,000,000
//! timers whose deadlines are spread over the next 10 minutes. Deadlines come from a
//! fixed-seed xorshift, so every run measures the same work.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gossipd::wheel::{TimerKey, TimerWheel};

const TIMERS: usize = 1_000_000;
const HORIZON_MS: u64 = 10 * 60 * 1_000;
/// An arbitrary wall-clock-like start, so slot arithmetic is not all zeros.
const START_MS: u64 = 1_763_700_000_000;

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn deadlines() -> Vec<u64> {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    (0..TIMERS)
        .map(|_| START_MS + rng.below(HORIZON_MS))
        .collect()
}

fn filled(deadlines: &[u64]) -> (TimerWheel<u64>, Vec<TimerKey>) {
    let mut wheel = TimerWheel::new(START_MS);
    let keys = (0u64..)
        .zip(deadlines)
        .map(|(value, &deadline)| wheel.insert(deadline, value))
        .collect();
    (wheel, keys)
}

/// Keys in a random order, as timers are cancelled when peers answer, not as armed.
fn shuffled(mut keys: Vec<TimerKey>) -> Vec<TimerKey> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
    keys
}

/// Polls the way the daemon's loop does: jump to next_deadline, drain, repeat.
fn expire_all(wheel: &mut TimerWheel<u64>) -> u64 {
    let mut fired = 0;
    while let Some(at) = wheel.next_deadline() {
        while let Some((_, value)) = wheel.poll(at) {
            fired += black_box(value) & 1;
        }
    }
    fired
}

fn bench_wheel(c: &mut Criterion) {
    let deadlines = deadlines();
    let mut group = c.benchmark_group("wheel_1m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TIMERS as u64));
    group.bench_function("insert", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut wheel = TimerWheel::new(START_MS);
                for (value, &deadline) in (0u64..).zip(black_box(&deadlines)) {
                    black_box(wheel.insert(deadline, value));
                }
                wheel
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cancel", |b| {
        b.iter_batched(
            || {
                let (wheel, keys) = filled(&deadlines);
                (wheel, shuffled(keys))
            },
            |(mut wheel, keys)| {
                for key in keys {
                    black_box(wheel.cancel(key));
                }
                wheel
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("expire", |b| {
        b.iter_batched(
            || filled(&deadlines).0,
            |mut wheel| {
                black_box(expire_all(&mut wheel));
                wheel
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_wheel);
criterion_main!(benches);
