//! Every process a job started, found and stopped, whatever it did to hide.
//!
//! Killing a job child's process group is not enough: a job can start a
//! process in a new session (`setsid`, a daemon's double fork), which leaves
//! the group, and it survives the kill and its parent. cgroups would hold
//! such a process, but need privileges resq does not have. What holds
//! instead:
//!
//! - every job child, and the worker in process isolation mode, is a *child
//!   subreaper* (`PR_SET_CHILD_SUBREAPER`): a process whose parent dies is
//!   re-parented to its nearest subreaper ancestor, never to init, so
//!   whatever a job starts stays a descendant of its job child (and, if that
//!   dies, of the worker), where `/proc` lists it;
//! - to end a job's processes, the tree under its child is walked through
//!   `/proc/<pid>/task/<tid>/children`, each process found is stopped
//!   (SIGSTOP: it can no longer fork), the walk repeats until it finds
//!   nothing new (catching anything forked during a walk), and then every
//!   process found is killed (SIGKILL).
//!
//! The job child does this after every job (anything a job leaves running
//! is ended with it; with nothing left the walk reads one small file per
//! thread), when its worker is gone, and the worker does it before it kills
//! a child past its timeout. A process that escapes this must leave the
//! tree of its subreaper, which an unprivileged process cannot do.

use std::collections::HashSet;

use rustix::process::{kill_process, Pid, Signal};

/// Walks are repeated at most this often: a fork bomb faster than the walk
/// still ends, stopped, in the next ones.
const MAX_WALKS: usize = 64;

/// Makes this process a child subreaper (see the module doc).
pub(crate) fn become_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(std::io::Error::from)
}

/// The direct children of `pid` (of all its threads).
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

/// Stops, then kills, every descendant of `root` (not `root` itself);
/// returns their pids.
pub(crate) fn kill_descendants(root: u32) -> Vec<u32> {
    let mut found: Vec<u32> = Vec::new();
    let mut known: HashSet<u32> = HashSet::new();
    for _ in 0..MAX_WALKS {
        let mut new = 0;
        let mut frontier = vec![root];
        let mut visited = HashSet::new();
        while let Some(pid) = frontier.pop() {
            if !visited.insert(pid) {
                continue;
            }
            for child in children_of(pid) {
                if known.insert(child) {
                    signal(child, Signal::STOP);
                    found.push(child);
                    new += 1;
                }
                frontier.push(child);
            }
        }
        if new == 0 {
            break;
        }
    }
    for &pid in &found {
        signal(pid, Signal::KILL);
    }
    found
}

/// Sends `signal`; a process that is already gone is not an error here.
pub(crate) fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell that starts a process in a new session and one in the
    /// background: both are found under it and killed.
    #[test]
    fn finds_and_kills_what_left_the_group() {
        become_subreaper().unwrap();
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 600 & sleep 600 & wait"])
            .spawn()
            .unwrap();
        let shell_pid = shell.id();
        let mut seen = Vec::new();
        for _ in 0..500 {
            seen = children_of(shell_pid);
            if seen.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        let killed = kill_descendants(shell_pid);
        assert_eq!(killed.len(), 2);
        let _ = shell.kill();
        let _ = shell.wait();
        for pid in killed {
            // Killed: a zombie until reaped, then gone (SIGKILL takes a
            // moment to land).
            let dead = || {
                let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let after_name = state.rsplit(')').next().unwrap_or("");
                state.is_empty() || after_name.trim_start().starts_with('Z')
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !dead() {
                assert!(std::time::Instant::now() < deadline, "{pid} still runs");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}
