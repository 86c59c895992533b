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
use crate::pacing::Run;
use crate::process::{MachineFigures, ProcessFigures};
use crate::propagation::Propagation;
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
    /// `Verify` or `VerifyStream`.
    pub api: String,
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
    /// The server process's CPU over the run and its peak memory, when known.
    pub process: Option<ProcessFigures>,
    /// When the services run as separate processes: each one's CPU over this run (per
    /// request of this run: what one request costs that service, all its calls
    /// included), peak memory and time to ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ProcessFigures>,
    /// The whole machine's busy CPU over the run (every process, the generator and
    /// the stores included), when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineFigures>,
}

impl RunReport {
    /// The report of `run` of `api` on `server`, offered at `rate` with `cap`.
    pub fn of(server: &str, api: &str, rate: u32, cap: usize, run: &Run) -> RunReport {
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
                Outcome::Issued => decisions.insert("ISSUED".to_owned(), n),
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
            api: api.to_owned(),
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
            process: None,
            services: Vec::new(),
            machine: None,
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
    /// CPU per request, service / bare (lower is better, down to 1), when both
    /// servers' processes were measured apart.
    pub cpu_per_request: Option<f64>,
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
            cpu_per_request: match (&verifier.process, &ceiling.process) {
                (Some(v), Some(c)) if v.scope != c.scope => {
                    Some(ratio(v.cpu_us_per_request, c.cpu_us_per_request))
                }
                _ => None,
            },
        }
    }
}

/// A whole report: the verifier's run, and the bare server's with the ratios; the
/// same over VerifyStream when asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The verifier's URL, or `in-process`.
    pub target: String,
    /// The machine's load average (1, 5, 15 minutes) just before the runs: other
    /// work on the machine shows here.
    pub load_average: Option<[f64; 3]>,
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
    /// The floor over Verify: the bare server plus, per verified code, one outbound
    /// TapIn and/or the shared store's steps (`--floor`, [`crate::floor`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<RunReport>,
    /// What the floor did per verified code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_shape: Option<crate::ceiling::FloorShape>,
    /// The verifier over the floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_ratios: Option<Ratios>,
    /// The floor over the bare server: what the one outbound call costs alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_over_bare: Option<Ratios>,
    /// VerifyStreams open at once (0: no VerifyStream run).
    pub streams: usize,
    /// The verifier over VerifyStream.
    pub stream: Option<RunReport>,
    /// The bare server over VerifyStream.
    pub stream_ceiling: Option<RunReport>,
    pub stream_ratios: Option<Ratios>,
    /// The floor over VerifyStream (`--floor` with streams): each stream's scans in
    /// order, each verified code's steps awaited before the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_floor: Option<RunReport>,
    /// The verifier's VerifyStream over the floor's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_floor_ratios: Option<Ratios>,
    /// Citizens' apps enrolled for IssueToken (0: no IssueToken run).
    pub citizens: usize,
    /// The issuer's IssueToken.
    pub issue: Option<RunReport>,
    /// The bare sign server's.
    pub issue_ceiling: Option<RunReport>,
    pub issue_ratios: Option<Ratios>,
    /// The sign floor's (`--floor` with citizens and a Redis, [`crate::bare_sign`]):
    /// the bare sign server plus the nonce's first use on Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issue_floor: Option<RunReport>,
    /// The issuer over the sign floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issue_floor_ratios: Option<Ratios>,
    /// Revocation propagation under the verifier's Verify load (`--revocations`).
    pub propagation: Option<Propagation>,
}

/// The machine's load average from `/proc/loadavg`.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
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

    /// Every run of the report, in the order of the table.
    pub fn runs(&self) -> impl Iterator<Item = &RunReport> {
        [
            Some(&self.verifier),
            self.ceiling.as_ref(),
            self.floor.as_ref(),
            self.stream.as_ref(),
            self.stream_ceiling.as_ref(),
            self.stream_floor.as_ref(),
            self.issue.as_ref(),
            self.issue_ceiling.as_ref(),
            self.issue_floor.as_ref(),
        ]
        .into_iter()
        .flatten()
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

const HEADER: [&str; 14] = [
    "server",
    "api",
    "offered/s",
    "achieved/s",
    "answered",
    "p50",
    "p90",
    "p99",
    "p99.9",
    "max",
    "errors",
    "CPU µs/req",
    "RSS MiB",
    "machine µs/req",
];

fn table_header(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let h = HEADER;
    writeln!(
        f,
        "{:<20} {:<12} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>10} {:>8} {:>14}",
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13]
    )
}

fn ratio_row(f: &mut fmt::Formatter<'_>, over: &str, label: &str, r: &Ratios) -> fmt::Result {
    let cpu = r
        .cpu_per_request
        .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"));
    writeln!(
        f,
        "{:<20} {:<12} {:>10} {:>10.2} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>6} {:>10}",
        over, label, "", r.achieved_rate, "", r.p50, r.p90, r.p99, r.p999, "", "", cpu
    )
}

/// A run's server CPU µs per request and peak RSS (MiB) as table cells, `-` when the
/// server was not the tool's child process.
pub(crate) fn process_cells(process: Option<&ProcessFigures>) -> (String, String) {
    process.map_or_else(
        || ("-".to_owned(), "-".to_owned()),
        |p| {
            (
                format!("{:.0}", p.cpu_us_per_request),
                format!("{:.1}", p.peak_rss_mib),
            )
        },
    )
}

fn table_row(f: &mut fmt::Formatter<'_>, r: &RunReport) -> fmt::Result {
    let l = &r.latency_us;
    let (cpu, rss) = process_cells(r.process.as_ref());
    let machine = r.machine.as_ref().map_or_else(
        || "-".to_owned(),
        |m| format!("{:.0}", m.cpu_us_per_request),
    );
    writeln!(
        f,
        "{:<20} {:<12} {:>10.0} {:>10.0} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>10} {:>8} {:>14}",
        r.server,
        r.api,
        r.offered_rate,
        r.achieved_rate,
        r.answered,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        r.errors.values().sum::<u64>(),
        cpu,
        rss,
        machine,
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
            "Open loop, {:.0} s per run against {}, gates {}, mix {}{}",
            self.duration_s,
            self.target,
            self.gates.join(" "),
            mix.join(","),
            if self.streams > 0 {
                format!(", VerifyStream over {} streams", self.streams)
            } else {
                String::new()
            }
        )?;
        if self.citizens > 0 {
            writeln!(
                f,
                "IssueToken from {} citizens' apps, each request signed before the run",
                self.citizens
            )?;
        }
        if let Some([one, five, fifteen]) = self.load_average {
            writeln!(
                f,
                "load average before the runs: {one:.2} {five:.2} {fifteen:.2}"
            )?;
        }
        writeln!(f, "latency from each request's intended send time, ms\n")?;
        table_header(f)?;
        table_row(f, &self.verifier)?;
        if let Some(ceiling) = &self.ceiling {
            table_row(f, ceiling)?;
        }
        if let Some(r) = &self.ratios {
            ratio_row(f, "service / bare", "Verify", r)?;
        }
        if let Some(floor) = &self.floor {
            table_row(f, floor)?;
        }
        if let Some(r) = &self.floor_ratios {
            ratio_row(f, "service / floor", "Verify", r)?;
        }
        if let Some(r) = &self.floor_over_bare {
            ratio_row(f, "floor / bare", "Verify", r)?;
        }
        for run in self.stream.iter().chain(&self.stream_ceiling) {
            table_row(f, run)?;
        }
        if let Some(r) = &self.stream_ratios {
            ratio_row(f, "service / bare", "VerifyStream", r)?;
        }
        if let Some(floor) = &self.stream_floor {
            table_row(f, floor)?;
        }
        if let Some(r) = &self.stream_floor_ratios {
            ratio_row(f, "service / floor", "VerifyStream", r)?;
        }
        for run in self.issue.iter().chain(&self.issue_ceiling) {
            table_row(f, run)?;
        }
        if let Some(r) = &self.issue_ratios {
            ratio_row(f, "service / bare", "IssueToken", r)?;
        }
        if let Some(floor) = &self.issue_floor {
            table_row(f, floor)?;
        }
        if let Some(r) = &self.issue_floor_ratios {
            ratio_row(f, "service / floor", "IssueToken", r)?;
        }
        if let Some(p) = &self.propagation {
            let at = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
            writeln!(
                f,
                "\nrevocation propagation under the Verify load: {} revoked, {} enforced within {} s; from Revoke's answer to the first SUBJECT_REVOKED, ms: p50 {}, p90 {}, p99 {}, max {}",
                p.revoked,
                p.enforced,
                crate::propagation::DEADLINE.as_secs(),
                at(p.p50_ms),
                at(p.p90_ms),
                at(p.p99_ms),
                at(p.max_ms)
            )?;
            if !p.unexpected.is_empty() {
                writeln!(
                    f,
                    "  unexpected answers while waiting: {}",
                    p.unexpected.join(", ")
                )?;
            }
        }
        for run in self.runs() {
            writeln!(f, "\n{} ({}):", run.server, run.api)?;
            if let Some(p) = &run.process {
                let ready = p
                    .ready_ms
                    .map_or_else(String::new, |r| format!(", ready {r:.0} ms after spawn"));
                writeln!(
                    f,
                    "  {}: CPU {:.0} ms ({:.0} µs per request, {:.2} cores busy), peak RSS {:.1} MiB{ready}",
                    p.scope, p.cpu_ms, p.cpu_us_per_request, p.cores_busy, p.peak_rss_mib
                )?;
            }
            if !run.services.is_empty() {
                writeln!(f, "  per service over this run:")?;
            }
            for p in &run.services {
                let ready = p
                    .ready_ms
                    .map_or_else(String::new, |r| format!(", ready {r:.0} ms after spawn"));
                writeln!(
                    f,
                    "    {:<28} CPU {:>6.0} µs per request ({:.2} cores busy), peak RSS {:.1} MiB{ready}",
                    p.scope, p.cpu_us_per_request, p.cores_busy, p.peak_rss_mib
                )?;
            }
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
        let report = RunReport::of("verifier", "Verify", 10, 4, &run(0));
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
        let verifier = RunReport::of("verifier", "Verify", 10, 4, &run(3));
        let ceiling = RunReport::of("bare verify server", "Verify", 10, 4, &run(0));
        let report = Report {
            target: "test".to_owned(),
            load_average: Some([1.0, 2.0, 3.0]),
            streams: 0,
            stream: None,
            stream_ceiling: None,
            stream_ratios: None,
            stream_floor: None,
            stream_floor_ratios: None,
            citizens: 0,
            issue: None,
            issue_ceiling: None,
            issue_ratios: None,
            issue_floor: None,
            issue_floor_ratios: None,
            propagation: None,
            duration_s: 1.0,
            mix: Report::mix_of(&Mix::default()),
            gates: vec!["g1".to_owned()],
            ratios: Some(Ratios::of(&verifier, &ceiling)),
            floor: None,
            floor_shape: None,
            floor_ratios: None,
            floor_over_bare: None,
            verifier,
            ceiling: Some(ceiling),
        };
        let table = report.to_string();
        assert!(table.contains("in-flight cap 4 reached 3 times"), "{table}");
        assert_eq!(table.matches("reached").count(), 1, "{table}");
        assert!(table.contains("service / bare"), "{table}");
        assert!(
            table.contains("load average before the runs: 1.00"),
            "{table}"
        );
        assert_eq!(report.ratios.map(|r| r.p50), Some(1.0));
    }
}
