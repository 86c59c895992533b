//! The figures of a run, as a terminal table and as JSON.
//!
//! Offered rate is what the generator was asked for; achieved rate is decisions (not
//! gRPC errors) over the time from the start to the last answer, so a server that fell
//! behind or shed load shows a lower one. Percentiles are of the latency from each request's intended send time. When a
//! bare server was loaded too, the verifier's figures are also given as ratios to its
//! (throughput: higher is better, up to 1; latency: lower is better, down to 1).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::error::LoadError;
use crate::mix::{CodeKind, Mix};
use crate::open_loop::Run;
use crate::record::Outcome;

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// One server's run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `verifier` or `bare verify server`.
    pub server: String,
    /// Requests per second asked for.
    pub offered_rate: f64,
    /// Requests per second actually sent (below the offered one when the generator
    /// fell behind).
    pub sent_rate: f64,
    /// Decisions (answers that are not gRPC errors) per second, from the start to the
    /// last answer.
    pub achieved_rate: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered (with a decision or a gRPC error).
    pub answered: u64,
    /// From the intended send time to the answer.
    pub latency_us: Latency,
    /// gRPC errors by code.
    pub errors: BTreeMap<String, u64>,
    /// Decisions: `ALLOW` and each deny reason.
    pub decisions: BTreeMap<String, u64>,
    /// Outcomes by the kind of code sent.
    pub by_kind: BTreeMap<CodeKind, BTreeMap<String, u64>>,
    /// The cap on requests in flight.
    pub in_flight_cap: usize,
    /// How often a request found the cap reached (then the run measured less than
    /// it offered).
    pub in_flight_cap_hits: u64,
    /// The most requests in flight at once.
    pub max_in_flight: usize,
    /// How late the generator sent requests after their due time, microseconds
    /// (included in every latency above).
    pub send_lag_us: Latency,
}

impl RunReport {
    /// The report of `run`, offered at `rate` with `cap`.
    pub fn of(server: &str, rate: u32, cap: usize, run: &Run) -> RunReport {
        let percentiles = |h: &hdrhistogram::Histogram<u64>| Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        };
        let per_second = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut errors = BTreeMap::new();
        let mut decisions = BTreeMap::new();
        for (outcome, n) in run.recording.outcomes() {
            match outcome {
                Outcome::Failed(code) => errors.insert(code, n),
                Outcome::Allowed => decisions.insert("ALLOW".to_owned(), n),
                Outcome::Denied(reason) => decisions.insert(reason, n),
            };
        }
        let by_kind = run
            .recording
            .by_kind
            .iter()
            .map(|(kind, outcomes)| {
                let outcomes = outcomes.iter().map(|(o, n)| (o.label(), *n)).collect();
                (*kind, outcomes)
            })
            .collect();
        RunReport {
            server: server.to_owned(),
            offered_rate: f64::from(rate),
            sent_rate: per_second(run.sent, run.last_send.as_secs_f64()),
            achieved_rate: per_second(
                run.recording.answered() - errors.values().sum::<u64>(),
                run.recording.last_answer.as_secs_f64(),
            ),
            sent: run.sent,
            answered: run.recording.answered(),
            latency_us: percentiles(&run.recording.latency),
            errors,
            decisions,
            by_kind,
            in_flight_cap: cap,
            in_flight_cap_hits: run.cap_hits,
            max_in_flight: run.max_in_flight,
            send_lag_us: percentiles(&run.send_lag),
        }
    }
}

/// The verifier's figures over the bare server's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    /// Achieved rate, verifier / bare (1.0 when both kept up with the offered load).
    pub achieved_rate: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Ratios {
    /// `verifier` over `ceiling`.
    pub fn of(verifier: &RunReport, ceiling: &RunReport) -> Ratios {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let (v, c) = (&verifier.latency_us, &ceiling.latency_us);
        let us = |a: u64, b: u64| ratio(a as f64, b as f64);
        Ratios {
            achieved_rate: ratio(verifier.achieved_rate, ceiling.achieved_rate),
            p50: us(v.p50, c.p50),
            p90: us(v.p90, c.p90),
            p99: us(v.p99, c.p99),
            p999: us(v.p999, c.p999),
        }
    }
}

/// A whole report: the verifier's run, and the bare server's with the ratios.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The verifier's URL, or `in-process`.
    pub target: String,
    /// Seconds of load offered.
    pub duration_s: f64,
    /// The kinds of code and their shares.
    pub mix: BTreeMap<CodeKind, u32>,
    /// Gates played, round-robin.
    pub gates: Vec<String>,
    pub verifier: RunReport,
    /// The bare verify server, loaded the same way (absent with `--no-ceiling`).
    pub ceiling: Option<RunReport>,
    pub ratios: Option<Ratios>,
}

impl Report {
    /// The report's mix as a map.
    pub fn mix_of(mix: &Mix) -> BTreeMap<CodeKind, u32> {
        CodeKind::ALL
            .into_iter()
            .map(|k| (k, mix.share(k)))
            .filter(|(_, share)| *share > 0)
            .collect()
    }

    /// Writes the report as one JSON object to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let write = |source: std::io::Error| LoadError::Write {
            path: path.to_owned(),
            source,
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| write(e.into()))?;
        std::fs::write(path, json + "\n").map_err(write)
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn table_row(f: &mut fmt::Formatter<'_>, r: &RunReport) -> fmt::Result {
    let l = &r.latency_us;
    writeln!(
        f,
        "{:<20} {:>10.0} {:>10.0} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
        r.server,
        r.offered_rate,
        r.achieved_rate,
        r.answered,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        r.errors.values().sum::<u64>(),
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mix: Vec<String> = self
            .mix
            .iter()
            .map(|(k, s)| format!("{}={s}", k.name()))
            .collect();
        writeln!(
            f,
            "Verify, open loop, {:.0} s against {}, gates {}, mix {}",
            self.duration_s,
            self.target,
            self.gates.join(" "),
            mix.join(",")
        )?;
        writeln!(f, "latency from each request's intended send time, ms\n")?;
        writeln!(
            f,
            "{:<20} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
            "server",
            "offered/s",
            "achieved/s",
            "answered",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "errors"
        )?;
        table_row(f, &self.verifier)?;
        if let Some(ceiling) = &self.ceiling {
            table_row(f, ceiling)?;
        }
        if let Some(r) = &self.ratios {
            writeln!(
                f,
                "{:<20} {:>10} {:>10.2} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                "verifier / bare", "", r.achieved_rate, "", r.p50, r.p90, r.p99, r.p999
            )?;
        }
        for run in std::iter::once(&self.verifier).chain(&self.ceiling) {
            writeln!(f, "\n{}:", run.server)?;
            if run.in_flight_cap_hits > 0 {
                writeln!(
                    f,
                    "  in-flight cap {} reached {} times: the load offered was not all sent on time",
                    run.in_flight_cap, run.in_flight_cap_hits
                )?;
            }
            writeln!(
                f,
                "  sent {} at {:.0}/s, most in flight {} (cap {}), sent late by p50 {} ms, p99 {} ms, max {} ms",
                run.sent,
                run.sent_rate,
                run.max_in_flight,
                run.in_flight_cap,
                ms(run.send_lag_us.p50),
                ms(run.send_lag_us.p99),
                ms(run.send_lag_us.max)
            )?;
            for (kind, outcomes) in &run.by_kind {
                let outcomes: Vec<String> =
                    outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
                writeln!(f, "  {:<9} {}", kind.name(), outcomes.join(", "))?;
            }
            for (code, n) in &run.errors {
                writeln!(f, "  error {code}: {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::{Recording, latency_histogram};

    fn run(cap_hits: u64) -> Run {
        let mut recording = Recording::default();
        let ms = Duration::from_millis;
        for i in 0..8 {
            recording.record(CodeKind::Fresh, Outcome::Allowed, ms(2), ms(100 * i));
        }
        recording.record(
            CodeKind::Fresh,
            Outcome::Failed("ResourceExhausted".into()),
            ms(1),
            ms(700),
        );
        recording.record(
            CodeKind::Forged,
            Outcome::Denied("BAD_SIGNATURE".into()),
            ms(3),
            ms(1000),
        );
        Run {
            sent: 10,
            recording,
            last_send: ms(900),
            cap_hits,
            max_in_flight: 4,
            send_lag: latency_histogram(),
        }
    }

    #[test]
    fn errors_are_answers_but_not_decisions() {
        let report = RunReport::of("verifier", 10, 4, &run(0));
        assert_eq!(report.answered, 10);
        // 9 decisions over the 1 s to the last answer.
        assert!(
            (report.achieved_rate - 9.0).abs() < 1e-9,
            "{}",
            report.achieved_rate
        );
        assert_eq!(
            report.errors,
            BTreeMap::from([("ResourceExhausted".to_owned(), 1)])
        );
        assert_eq!(report.decisions["ALLOW"], 8);
        assert_eq!(report.decisions["BAD_SIGNATURE"], 1);
        assert_eq!(report.by_kind[&CodeKind::Forged]["DENY BAD_SIGNATURE"], 1);
    }

    #[test]
    fn the_table_says_when_the_in_flight_cap_was_reached_and_gives_ratios() {
        let verifier = RunReport::of("verifier", 10, 4, &run(3));
        let ceiling = RunReport::of("bare verify server", 10, 4, &run(0));
        let report = Report {
            target: "test".to_owned(),
            duration_s: 1.0,
            mix: Report::mix_of(&Mix::default()),
            gates: vec!["g1".to_owned()],
            ratios: Some(Ratios::of(&verifier, &ceiling)),
            verifier,
            ceiling: Some(ceiling),
        };
        let table = report.to_string();
        assert!(table.contains("in-flight cap 4 reached 3 times"), "{table}");
        assert_eq!(table.matches("reached").count(), 1, "{table}");
        assert!(table.contains("verifier / bare"), "{table}");
        assert_eq!(report.ratios.map(|r| r.p50), Some(1.0));
    }
}
