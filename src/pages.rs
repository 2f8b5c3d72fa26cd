//! Memory pages: transparent huge pages for the simulator, small pages for the daemons.
//!
//! A million-peer simulation holds about 6 GiB in small allocations and reads them at
//! random. On 4 KiB pages that costs two million page faults and a TLB miss on most node
//! reads; on 2 MiB pages, with freed memory kept, 4,400 faults and fewer misses
//! (docs/MEASUREMENTS.md has the figures). A daemon holds about 4 MiB, which 2 MiB pages
//! would double.
//!
//! The allocator (mimalloc) advises huge pages for its memory when its `allow_thp` option
//! is on, and most kernels give huge pages only to memory so advised
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`). This build sets that
//! option's default to off (`.cargo/config.toml`), so mimalloc turns huge pages off for
//! its process when it loads, before the first allocation: every daemon stays on small
//! pages. mimalloc reads its options only from the environment, and only then; so
//! `gossipd sim` turns huge pages back on for its process and replaces itself (`exec`: same
//! process id, arguments and streams) with a copy that has [`SIM_ALLOCATOR`] in its
//! environment, unless the user set those variables already (to anything: setting
//! `MIMALLOC_ALLOW_THP=0` keeps the simulator on small pages).

use std::ffi::OsString;

/// The allocator's setting for transparent huge pages.
pub const ALLOW_THP: &str = "MIMALLOC_ALLOW_THP";

/// The allocator settings the simulator runs with: huge pages for the heap, and freed
/// memory kept instead of handed back to the kernel and faulted in again when reused.
pub const SIM_ALLOCATOR: [(&str, &str); 2] = [(ALLOW_THP, "1"), ("MIMALLOC_PURGE_DELAY", "-1")];

/// The settings of [`SIM_ALLOCATOR`] that `env` (a variable's value by name) lacks.
pub fn unset_sim_settings(
    env: impl Fn(&str) -> Option<OsString>,
) -> Vec<(&'static str, &'static str)> {
    SIM_ALLOCATOR
        .into_iter()
        .filter(|(name, _)| env(name).is_none())
        .collect()
}

/// Runs this program again in this process, huge pages allowed and the simulator's
/// allocator settings added to its environment. Returns only when it did not: `Ok` when
/// the environment has every setting already, the error when the program could not be
/// executed (the caller then goes on as it is).
#[cfg(unix)]
pub fn exec_with_sim_allocator() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let unset = unset_sim_settings(|name| std::env::var_os(name));
    if unset.is_empty() {
        return Ok(());
    }
    // The allocator turned them off when this process loaded, and that survives `exec`.
    allow_huge_pages(true)?;
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .envs(unset)
        .exec();
    // The caller goes on here with huge pages allowed, which the simulator wants anyway.
    Err(err)
}

#[cfg(not(unix))]
pub fn exec_with_sim_allocator() -> std::io::Result<()> {
    Ok(())
}

/// Keeps this process on small pages: transparent huge pages off, for every thread and
/// for the programs it starts. The allocator has done so already when it loaded, unless
/// this was built without `.cargo/config.toml`; then this keeps what the daemon allocates
/// from now on small.
pub fn keep_small_pages() -> std::io::Result<()> {
    allow_huge_pages(false)
}

#[cfg(target_os = "linux")]
fn allow_huge_pages(allow: bool) -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(!allow).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn allow_huge_pages(_allow: bool) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            let found = set.iter().find(|(n, _)| *n == name);
            found.map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn an_empty_environment_lacks_every_setting() {
        assert_eq!(unset_sim_settings(env_of(&[])), SIM_ALLOCATOR.to_vec());
    }

    #[test]
    fn a_setting_the_user_made_is_kept_whatever_its_value() {
        let user = [(ALLOW_THP, "0")];
        let unset = unset_sim_settings(env_of(&user));
        assert_eq!(unset, vec![("MIMALLOC_PURGE_DELAY", "-1")]);
        let both = [(ALLOW_THP, "0"), ("MIMALLOC_PURGE_DELAY", "")];
        assert!(unset_sim_settings(env_of(&both)).is_empty());
    }
}
