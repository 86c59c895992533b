//! `--sweep 500,1000,2000,5000`: the same report at each offered rate, one after the
//! other against the same servers (started once, so their time to ready is measured
//! once), to find where latency leaves the floor: the knee. Each point is a whole
//! [`Report`]; the sweep adds a summary table and the chart ([`crate::chart`]).

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::error::LoadError;
use crate::report::{Report, RunReport, process_cells};
use crate::verify::{Session, Settings};

/// Most rates in one sweep.
pub const MAX_RATES: usize = 16;

/// Every point of a sweep, in the order run.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub points: Vec<Report>,
}

/// Parses `500,1000,2000`: rates above zero, at most [`MAX_RATES`].
pub fn parse_rates(text: &str) -> Result<Vec<u32>, String> {
    let rates: Vec<u32> = text
        .split(',')
        .map(|r| {
            r.trim()
                .parse::<u32>()
                .ok()
                .filter(|&r| r > 0)
                .ok_or_else(|| format!("{r:?} is not a rate (requests per second above 0)"))
        })
        .collect::<Result<_, _>>()?;
    if rates.is_empty() || rates.len() > MAX_RATES {
        return Err(format!("between 1 and {MAX_RATES} rates"));
    }
    Ok(rates)
}

/// Runs `settings` at each of `rates` against one session.
pub async fn sweep(settings: &Settings, rates: &[u32]) -> Result<Sweep, LoadError> {
    for &rate in rates {
        let mut at_rate = settings.clone();
        at_rate.rate = rate;
        at_rate.requests()?;
    }
    let session = Session::start(settings).await?;
    let mut points = Vec::with_capacity(rates.len());
    let mut failed = None;
    for &rate in rates {
        match session.point(settings, rate).await {
            Ok(report) => points.push(report),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    session.stop().await;
    match failed {
        Some(e) => Err(e),
        None => Ok(Sweep { points }),
    }
}

impl Sweep {
    /// Every run of every point, with its point's load average.
    pub fn runs(&self) -> impl Iterator<Item = (&Report, &RunReport)> {
        self.points
            .iter()
            .flat_map(|p| p.runs().map(move |r| (p, r)))
    }

    /// Writes the sweep as one JSON object to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let write = |source: std::io::Error| LoadError::Write {
            path: path.to_owned(),
            source,
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| write(e.into()))?;
        std::fs::write(path, json + "\n").map_err(write)
    }
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for point in &self.points {
            writeln!(f, "{point}")?;
        }
        writeln!(f, "Sweep summary (latency ms from the intended send time):")?;
        writeln!(
            f,
            "{:>9} {:<20} {:<12} {:>10} {:>8} {:>8} {:>7} {:>10} {:>8} {:>6}",
            "offered/s",
            "server",
            "api",
            "achieved/s",
            "p50",
            "p99",
            "errors",
            "CPU µs/req",
            "RSS MiB",
            "load1"
        )?;
        for (point, run) in self.runs() {
            let l = run.latency_us;
            let (cpu, rss) = process_cells(run.process.as_ref());
            writeln!(
                f,
                "{:>9.0} {:<20} {:<12} {:>10.0} {:>8.2} {:>8.2} {:>7} {:>10} {:>8} {:>6}",
                run.offered_rate,
                run.server,
                run.api,
                run.achieved_rate,
                l.p50 as f64 / 1000.0,
                l.p99 as f64 / 1000.0,
                run.errors.values().sum::<u64>(),
                cpu,
                rss,
                point
                    .load_average
                    .map_or_else(|| "-".to_owned(), |l| format!("{:.2}", l[0])),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_or_say_what_is_wrong() {
        assert_eq!(parse_rates("500, 1000,2000"), Ok(vec![500, 1000, 2000]));
        assert!(parse_rates("500,0").is_err());
        assert!(parse_rates("fast").is_err());
        assert!(parse_rates("").is_err());
        assert!(parse_rates(&vec!["1"; MAX_RATES + 1].join(",")).is_err());
    }
}
