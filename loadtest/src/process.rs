//! What a server process cost: its CPU time and its peak resident memory, read from
//! Linux's `/proc/<pid>/stat` and `/proc/<pid>/status`.
//!
//! CPU time is user plus system time of every thread of the process (fields 14 and 15
//! of `stat`, in clock ticks); the difference over a run divided by the requests
//! answered is the CPU per request. Peak memory is `VmHWM`, the high-water mark of the
//! resident set since the process started. A process the tool started (a child) has
//! only the server in it; the tool's own process, when the servers run inside it, also
//! holds the generator, and its figures are labelled so.
//!
//! The whole machine's busy CPU (every process: the generator, the services, the
//! stores, and whatever else runs) is read from `/proc/stat` the same way: per request
//! answered, it says how many requests per second the machine could carry at all.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;

/// Clock ticks per second when `getconf CLK_TCK` cannot say (Linux's USER_HZ on every
/// common architecture).
const DEFAULT_TICKS_PER_SECOND: u64 = 100;

/// Which process: a child by id, or this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// This process (`/proc/self`).
    Own,
    /// A process the tool started.
    Child(u32),
}

impl Pid {
    fn dir(self) -> PathBuf {
        match self {
            Pid::Own => PathBuf::from("/proc/self"),
            Pid::Child(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// User plus system CPU time so far, all threads.
    pub cpu: Duration,
    /// Peak resident set so far, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

/// Reads `/proc` for processes of this machine.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    ticks_per_second: u64,
}

impl Meter {
    /// A meter with this machine's clock tick (`getconf CLK_TCK`, else 100).
    pub fn new() -> Meter {
        let ticks = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_TICKS_PER_SECOND);
        Meter {
            ticks_per_second: ticks,
        }
    }

    /// The process's CPU time and peak memory now.
    pub fn sample(&self, pid: Pid) -> Result<Sample, LoadError> {
        let dir = pid.dir();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| LoadError::File {
                path,
                problem: e.to_string(),
            })
        };
        let bad = |what: &str| LoadError::File {
            path: dir.clone(),
            problem: format!("unexpected {what}"),
        };
        let ticks = cpu_ticks(&read("stat")?).ok_or_else(|| bad("stat"))?;
        let peak_rss_kib = vm_hwm_kib(&read("status")?).ok_or_else(|| bad("status"))?;
        Ok(Sample {
            cpu: Duration::from_secs_f64(ticks as f64 / self.ticks_per_second as f64),
            peak_rss_kib,
        })
    }
}

impl Meter {
    /// Busy CPU time of the whole machine so far, every core: user, nice, system,
    /// irq, softirq and steal time from the first line of `/proc/stat` (idle and
    /// iowait left out).
    pub fn machine(&self) -> Result<Duration, LoadError> {
        let path = PathBuf::from("/proc/stat");
        let text = std::fs::read_to_string(&path).map_err(|e| LoadError::File {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let ticks = busy_ticks(&text).ok_or_else(|| LoadError::File {
            path,
            problem: "unexpected stat".to_owned(),
        })?;
        Ok(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_second as f64,
        ))
    }
}

/// The machine's busy ticks from `/proc/stat`'s `cpu` line: `user nice system idle
/// iowait irq softirq steal ...`, all but idle and iowait (guest time is inside user).
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = fields[..] else {
        return None;
    };
    [nice, system, irq, softirq, steal]
        .into_iter()
        .try_fold(user, u64::checked_add)
}

/// What the whole machine spent over one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineFigures {
    /// Busy CPU of every process over the run per request answered, microseconds.
    pub cpu_us_per_request: f64,
    /// Busy CPU per second of the run (the machine's cores at most).
    pub cores_busy: f64,
}

impl MachineFigures {
    /// The figures between the busy times `before` and `after`.
    pub fn between(
        before: Duration,
        after: Duration,
        answered: u64,
        wall: Duration,
    ) -> MachineFigures {
        let busy = after.saturating_sub(before).as_secs_f64();
        MachineFigures {
            cpu_us_per_request: if answered > 0 {
                busy * 1e6 / answered as f64
            } else {
                0.0
            },
            cores_busy: if wall.is_zero() {
                0.0
            } else {
                busy / wall.as_secs_f64()
            },
        }
    }
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new()
    }
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing one.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and
    // 13th fields here (index 11 and 12).
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// `VmHWM` in KiB from a `/proc/<pid>/status` text.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What a server cost over one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessFigures {
    /// Whose figures: `child process <name>`, or `this process (generator and
    /// servers)` when the servers ran inside the tool.
    pub scope: String,
    /// CPU time over the run, milliseconds.
    pub cpu_ms: f64,
    /// CPU time over the run per request answered, microseconds.
    pub cpu_us_per_request: f64,
    /// CPU time over the run per second of the run (1.0 is one core busy).
    pub cores_busy: f64,
    /// Peak resident memory since the process started, MiB.
    pub peak_rss_mib: f64,
    /// From spawning the process to its first successful health check, milliseconds
    /// (children only).
    pub ready_ms: Option<f64>,
}

impl ProcessFigures {
    /// The figures between `before` and `after`, over `answered` requests and `wall`.
    pub fn between(
        scope: &str,
        before: Sample,
        after: Sample,
        answered: u64,
        wall: Duration,
        ready: Option<Duration>,
    ) -> ProcessFigures {
        let cpu = after.cpu.saturating_sub(before.cpu);
        let cpu_us = cpu.as_secs_f64() * 1e6;
        ProcessFigures {
            scope: scope.to_owned(),
            cpu_ms: cpu_us / 1000.0,
            cpu_us_per_request: if answered > 0 {
                cpu_us / answered as f64
            } else {
                0.0
            },
            cores_busy: if wall.is_zero() {
                0.0
            } else {
                cpu.as_secs_f64() / wall.as_secs_f64()
            },
            peak_rss_mib: after.peak_rss_kib as f64 / 1024.0,
            ready_ms: ready.map(|r| r.as_secs_f64() * 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_are_read_even_with_spaces_in_the_name() {
        let stat = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    1234 56 0 0 20 0 4 0 100 1000000 300 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1290));
        assert_eq!(cpu_ticks("garbage"), None);
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(20480));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
    }

    #[test]
    fn the_machine_is_busy_for_all_but_idle_and_iowait() {
        let stat = "cpu  100 2 30 9000 50 4 5 6 0 0\ncpu0 50 1 15 4500 25 2 2 3 0 0\n";
        assert_eq!(busy_ticks(stat), Some(100 + 2 + 30 + 4 + 5 + 6));
        assert_eq!(busy_ticks("cpu  1 2 3\n"), None);
        assert_eq!(busy_ticks("intr 5\n"), None);
        let meter = Meter::new();
        let before = meter.machine().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = meter.machine().unwrap();
        assert!(after > before, "{before:?} {after:?}");
        let figures = MachineFigures::between(before, after, 10, start.elapsed());
        assert!(figures.cpu_us_per_request > 0.0 && figures.cores_busy > 0.0);
    }

    #[test]
    fn this_process_has_spent_cpu_and_holds_memory() {
        let meter = Meter::new();
        let before = meter.sample(Pid::Own).unwrap();
        // Spend a little CPU so that the clock moves by at least a tick.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = meter.sample(Pid::Own).unwrap();
        assert!(after.cpu > before.cpu, "{before:?} {after:?}");
        assert!(after.peak_rss_kib > 1024, "{after:?}");
        let figures =
            ProcessFigures::between("own", before, after, 10, Duration::from_millis(100), None);
        assert!(figures.cpu_us_per_request > 0.0 && figures.cores_busy > 0.0);
    }

    #[test]
    fn a_child_is_read_apart_from_this_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep starts");
        let meter = Meter::new();
        let read = meter.sample(Pid::Child(child.id()));
        let own = meter.sample(Pid::Own).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let read = read.unwrap();
        // `sleep` holds far less memory than this test process, and has spent
        // (almost) no CPU.
        assert!(read.peak_rss_kib < own.peak_rss_kib, "{read:?} {own:?}");
        assert!(read.cpu < Duration::from_millis(100), "{read:?}");
        // A process that is gone cannot be read.
        assert!(meter.sample(Pid::Child(child.id())).is_err());
    }
}
