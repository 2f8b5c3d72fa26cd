//! Cache hints: ask the CPU to start loading a value's cache line now, so that code
//! reaching it a little later does not wait for memory.
//!
//! A hint has no effect on what the program does, only on when memory is read. The
//! simulator gives them for the inputs a few places ahead in its batch: a large run's
//! nodes, their connection tables and seen windows lie far apart in gigabytes of memory,
//! and waiting on them one input at a time was a large part of its time.

/// Starts loading the cache line that holds `value` into every cache level.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    ))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    )))]
    let _ = value;
}
