//! This process's resource use, read from /proc (Linux); None elsewhere.

/// /proc counts CPU time in these ticks per second on every Linux (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far (user + system) by every thread of this process, ended ones
/// included, in seconds, from /proc/self/stat.
pub fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: fields count from after it.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// Peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_field("VmHWM:")
}

/// Current resident set size (VmRSS), in KiB.
pub fn rss_kib() -> Option<u64> {
    status_field("VmRSS:")
}

/// Anonymous memory backed by transparent huge pages now, in KiB.
pub fn huge_pages_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    field(&text, "AnonHugePages:")
}

fn status_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    field(&text, name)
}

/// The number after `name` on its line of a /proc file.
fn field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_peak_rss_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(super::peak_rss_kib().is_some_and(|k| k > 0));
            if std::path::Path::new("/proc/self/smaps_rollup").exists() {
                assert!(super::huge_pages_kib().is_some());
            }
            let spin = std::time::Instant::now();
            while spin.elapsed() < std::time::Duration::from_millis(50) {
                std::hint::black_box(0);
            }
            assert!(super::cpu_seconds().is_some_and(|s| s >= 0.02));
        }
    }
}
