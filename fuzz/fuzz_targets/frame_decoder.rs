//! Fuzz target: arbitrary bytes, in arbitrary chunks, through one `FrameDecoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gossipd_fuzz::decode_chunks(data));
