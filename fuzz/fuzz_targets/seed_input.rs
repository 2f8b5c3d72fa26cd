//! Fuzz target: a script of connects, reads, closes and waits played into a seed core.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gossipd_fuzz::play(gossipd_fuzz::seed(), data));
