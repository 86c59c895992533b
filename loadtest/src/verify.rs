//! `citypass-loadtest verify`: one report from start to end.
//!
//! In order: the target (the in-process stack, a running one's files, or the stack
//! started as a child process) and, unless turned off, the bare verify server (in
//! process, or a child beside a child stack); the gates' connections to each, opened
//! and checked, and the riders enrolled, bound and linked to a payment account
//! ([`Session`]). Then per rate ([`Session::point`]): the codes, all
//! signed before anything is sent, the replayed ones used once; the open-loop Verify
//! run against the verifier; the same codes at the same rate from the same gates
//! against the bare server; with `--streams`, the same again over VerifyStream with
//! new codes; with `--citizens`, IssueToken from the citizens' apps (enrolled and
//! bound once per session, requests signed just before each run) against the issuer
//! and the bare sign server; the ratios. Each run's server CPU and peak memory are
//! read around it.

use std::time::Duration;

use citypass_token::{SecureRandom as _, SystemRandom, unix_now};
use tokio::sync::Semaphore;

use crate::ceiling::{BareServer, FloorShape};
use crate::citizens::{self, Citizen, MAX_ISSUE_DURATION};
use crate::codes::{self, CODE_LIFETIME};
use crate::error::LoadError;
use crate::gates::{self, CALL_TIMEOUT};
use crate::mix::{CodeKind, Mix};
use crate::open_loop::{self, GateClient};
use crate::pacing::Load;
use crate::process::{MachineFigures, Meter, Pid, ProcessFigures, Sample};
use crate::propagation;
use crate::record::Outcome;
use crate::report::{self, Ratios, Report, RunReport};
use crate::riders::Riders;
use crate::stream_loop;
use crate::target::{Target, TargetSpec};

/// Longest run: the codes are signed before it and live [`CODE_LIFETIME`].
pub const MAX_DURATION: Duration = Duration::from_secs(CODE_LIFETIME - 60);
/// Most requests in one run (the codes are held in memory, about 300 bytes each).
pub const MAX_REQUESTS: u64 = 5_000_000;
/// Replayed codes spent at once before the run.
const SPEND_CONCURRENCY: usize = 32;
/// Tries of a code spent before the run while the verifier answers SERVICE_UNAVAILABLE
/// (the scan is left unsettled then, so the same scan is tried again).
const SPEND_ATTEMPTS: u32 = 10;
/// Between two tries.
const SPEND_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The deny reason of a dependency that did not answer in time.
const UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: TargetSpec,
    /// Requests per second.
    pub rate: u32,
    /// How long the load is offered.
    pub duration: Duration,
    pub mix: Mix,
    /// Requests in flight at most.
    pub in_flight_cap: usize,
    /// Whether to load the bare verify server too.
    pub ceiling: bool,
    /// The floor to load too, and what it does ([`crate::floor`]): over Verify, over
    /// VerifyStream with `streams`, and the sign floor with `citizens` and a Redis.
    pub floor: Option<FloorShape>,
    /// The gate to play instead of the bus readers (`None`: the bus readers).
    pub gate: Option<String>,
    /// VerifyStreams to open for a VerifyStream run (0: none).
    pub streams: usize,
    /// Citizens' apps to enrol for an IssueToken run (0: none).
    pub citizens: usize,
    /// Riders to enrol and link before the run, the codes' holders (at least 1).
    pub riders: usize,
    /// Extra riders revoked one at a time during the verifier's Verify run, to measure
    /// revocation propagation under load (0: none; see [`crate::propagation`]).
    pub revocations: usize,
    /// Whether to show progress bars.
    pub progress: bool,
}

impl Settings {
    /// The run's request count, or why the settings are refused.
    pub fn requests(&self) -> Result<usize, LoadError> {
        let bad = |m: String| Err(LoadError::Settings(m));
        if self.rate == 0 {
            return bad("--rate must be at least 1".to_owned());
        }
        if self.duration < Duration::from_secs(1) || self.duration > MAX_DURATION {
            return bad(format!(
                "--duration must be between 1s and {}s (the codes are made before the run)",
                MAX_DURATION.as_secs()
            ));
        }
        if self.in_flight_cap == 0 {
            return bad("--in-flight-cap must be at least 1".to_owned());
        }
        if self.floor.is_some() && !self.ceiling {
            return bad("the floor is a ceiling: not with --no-ceiling".to_owned());
        }
        if self.riders == 0 {
            return bad("--riders must be at least 1 (the codes' holders)".to_owned());
        }
        if self.revocations > propagation::MAX_REVOCATIONS {
            return bad(format!(
                "--revocations must be at most {}",
                propagation::MAX_REVOCATIONS
            ));
        }
        if self.citizens > 0 && self.duration > MAX_ISSUE_DURATION {
            return bad(format!(
                "with --citizens, --duration must be at most {}s (IssueToken requests are signed before the run and the issuer accepts a proof for 30 s)",
                MAX_ISSUE_DURATION.as_secs()
            ));
        }
        if self.citizens > 0 {
            citizens::addresses_for(self.rate)?;
        }
        let n = (f64::from(self.rate) * self.duration.as_secs_f64()).round() as u64;
        if n > MAX_REQUESTS {
            return bad(format!("{n} requests: at most {MAX_REQUESTS} in one run"));
        }
        usize::try_from(n).map_err(|_| LoadError::Settings("too many requests".to_owned()))
    }
}

/// A fresh run id for scan ids, so that runs never share one.
fn run_id(server: &str) -> String {
    let mut bytes = [0u8; 6];
    // Without randomness, time keeps runs apart well enough.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        bytes.copy_from_slice(&unix_now().to_be_bytes()[2..]);
    }
    format!("load-{server}-{}", hex::encode(bytes))
}

/// Uses each of `texts` once, from the gates in turn; each must be allowed (a scan
/// refused SERVICE_UNAVAILABLE is retried, as a gate retries it).
async fn spend(gates: &[GateClient], texts: &[String]) -> Result<(), LoadError> {
    if gates.is_empty() && !texts.is_empty() {
        return Err(LoadError::Spend("no gate to use them from".to_owned()));
    }
    let slots = std::sync::Arc::new(Semaphore::new(SPEND_CONCURRENCY));
    let run = run_id("spend");
    let mut tasks = tokio::task::JoinSet::new();
    for (i, text) in texts.iter().enumerate() {
        let gate = &gates[i % gates.len()];
        let request = citypass_proto::v1::VerifyRequest {
            gate_id: gate.id.clone(),
            scene: gate.scene,
            scan_id: format!("{run}-{i}"),
            qr_text: text.clone(),
            ..Default::default()
        };
        let mut client = gate.client.clone();
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LoadError::Spend("slots closed".to_owned()))?;
        tasks.spawn(async move {
            let mut attempts = 1;
            loop {
                let answer = client
                    .verify(request.clone())
                    .await
                    .map(tonic::Response::into_inner);
                let outcome = Outcome::of(&answer);
                // A dependency that did not answer in time (payments opening its
                // pool's first connections): the scan is left unsettled, and the gate
                // retries it, as a turnstile would.
                if outcome == Outcome::Denied(UNAVAILABLE.to_owned()) && attempts < SPEND_ATTEMPTS {
                    attempts += 1;
                    tokio::time::sleep(SPEND_RETRY_PAUSE).await;
                    continue;
                }
                drop(slot);
                return outcome;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Outcome::Allowed) => {}
            Ok(other) => return Err(LoadError::Spend(other.label())),
            Err(e) => return Err(LoadError::Spend(e.to_string())),
        }
    }
    Ok(())
}

/// Runs the load `settings` describe at `settings.rate` and reports it.
pub async fn verify(settings: Settings) -> Result<Report, LoadError> {
    settings.requests()?;
    let session = Session::start(&settings).await?;
    let result = session.point(&settings, settings.rate).await;
    session.stop().await;
    result
}

/// What one report (one rate) may run against: the target with its gates connected,
/// and the bare server with its own connections. Started once, so a sweep reuses it.
pub struct Session {
    target: Target,
    gates: Vec<GateClient>,
    bare: Option<(BareServer, Vec<GateClient>)>,
    /// The floor, its trivial taps server (if it taps in), and the gates' connections
    /// to the floor.
    floor: Option<(BareServer, Option<BareServer>, Vec<GateClient>)>,
    riders: Riders,
    citizens: Vec<Citizen>,
    bare_signer: Option<BareServer>,
    /// The sign floor ([`crate::bare_sign`]): with `--floor`, citizens and a Redis.
    sign_floor: Option<BareServer>,
    meter: Meter,
}

/// How a run is measured: the process to read, its label, its time to ready.
type Measured = Option<(Pid, String, Option<Duration>)>;

impl Session {
    /// Starts (or reads) the target, and the bare server unless turned off.
    pub async fn start(settings: &Settings) -> Result<Session, LoadError> {
        let target = Target::start(&settings.target, settings.gate.as_deref()).await?;
        let started = Session::connect(settings, target).await;
        match started {
            Ok(session) => Ok(session),
            Err((target, e)) => {
                target.stop().await;
                Err(e)
            }
        }
    }

    async fn connect(settings: &Settings, target: Target) -> Result<Session, (Target, LoadError)> {
        let gates = match gates::connect(&target.url, &target.gates).await {
            Ok(gates) => gates,
            Err(e) => return Err((target, e)),
        };
        let bare = if settings.ceiling {
            let loadtest = settings.target.loadtest();
            let started = async {
                let bare = BareServer::start(&target, loadtest).await?;
                let gates = gates::connect(&bare.url(), &target.gates).await?;
                Ok::<_, LoadError>((bare, gates))
            }
            .await;
            match started {
                Ok(bare) => Some(bare),
                Err(e) => return Err((target, e)),
            }
        } else {
            None
        };
        let floor = if let Some(shape) = &settings.floor {
            let loadtest = settings.target.loadtest();
            let started = async {
                let (floor, taps) = BareServer::start_floor(&target, loadtest, shape).await?;
                let gates = gates::connect(&floor.url(), &target.gates).await?;
                Ok::<_, LoadError>((floor, taps, gates))
            }
            .await;
            match started {
                Ok(floor) => Some(floor),
                Err(e) => return Err((target, e)),
            }
        } else {
            None
        };
        let riders = match Riders::enrol(&target.riders, settings.riders).await {
            Ok(riders) => riders,
            Err(e) => return Err((target, e)),
        };
        let mut session = Session {
            target,
            gates,
            bare,
            floor,
            riders,
            citizens: Vec::new(),
            bare_signer: None,
            sign_floor: None,
            meter: Meter::new(),
        };
        if settings.citizens > 0 {
            let prepared = async {
                let apps = session.target.apps.as_ref().ok_or_else(|| {
                    LoadError::Settings(
                        "--citizens needs the stack's issuer: the in-process stack or --spawn"
                            .to_owned(),
                    )
                })?;
                session.citizens =
                    citizens::enrol(&apps.endpoints, settings.citizens, citizens::Then::Nothing)
                        .await?;
                if settings.ceiling {
                    let loadtest = settings.target.loadtest();
                    session.bare_signer = Some(
                        BareServer::start_signer(
                            &session.target,
                            &session.citizens,
                            loadtest,
                            None,
                        )
                        .await?,
                    );
                }
                // The sign floor takes the nonce's step on the floor's Redis.
                if let Some(url) = settings.floor.as_ref().and_then(|f| f.redis.as_deref()) {
                    session.sign_floor = Some(
                        BareServer::start_signer(
                            &session.target,
                            &session.citizens,
                            settings.target.loadtest(),
                            Some(url),
                        )
                        .await?,
                    );
                }
                Ok::<_, LoadError>(())
            }
            .await;
            if let Err(e) = prepared {
                return Err((session.target, e));
            }
        }
        Ok(session)
    }

    /// Each separate service's CPU time and memory now, before a run (none unless the
    /// services run separately).
    fn sample_services(&self) -> Result<Vec<Sample>, LoadError> {
        self.target
            .service_processes()
            .iter()
            .map(|(pid, _, _)| self.meter.sample(*pid))
            .collect()
    }

    /// Each separate service's figures over a run, from `before`.
    fn service_figures(
        &self,
        before: &[Sample],
        answered: u64,
        wall: Duration,
    ) -> Result<Vec<ProcessFigures>, LoadError> {
        self.target
            .service_processes()
            .into_iter()
            .zip(before)
            .map(|((pid, scope, ready), before)| {
                let after = self.meter.sample(pid)?;
                Ok(ProcessFigures::between(
                    &scope, *before, after, answered, wall, ready,
                ))
            })
            .collect()
    }

    /// The measured server's CPU time and memory now, before a run.
    fn sample(&self, process: &Measured) -> Result<Option<Sample>, LoadError> {
        process
            .as_ref()
            .map(|(pid, _, _)| self.meter.sample(*pid))
            .transpose()
    }

    /// The measured server's figures over a run of `wall` that got `answered` answers,
    /// from its sample `before`.
    fn figures(
        &self,
        process: Measured,
        before: Option<Sample>,
        answered: u64,
        wall: Duration,
    ) -> Result<Option<ProcessFigures>, LoadError> {
        let (Some(before), Some((pid, scope, ready))) = (before, process) else {
            return Ok(None);
        };
        let after = self.meter.sample(pid)?;
        Ok(Some(ProcessFigures::between(
            &scope, before, after, answered, wall, ready,
        )))
    }

    /// The whole machine's figures over a run, from its busy time `before`; none
    /// when `/proc/stat` could not be read (the run's other figures stand).
    fn machine_figures(
        &self,
        before: Option<Duration>,
        answered: u64,
        wall: Duration,
    ) -> Option<MachineFigures> {
        let after = self.meter.machine().ok()?;
        Some(MachineFigures::between(before?, after, answered, wall))
    }

    /// An IssueToken run at `load.rate` against the server at `url` (the issuer, or
    /// the bare sign server), its requests signed just before it starts.
    async fn issue(
        &self,
        load: Load,
        server: &str,
        url: &str,
        n: usize,
        process: Measured,
    ) -> Result<RunReport, LoadError> {
        let apps =
            self.target.apps.as_ref().ok_or_else(|| {
                LoadError::Settings("IssueToken needs the stack's issuer".to_owned())
            })?;
        let tls = apps
            .endpoints
            .tls
            .clone()
            .ok_or_else(|| LoadError::Settings("the apps' TLS is missing".to_owned()))?;
        let clients = citizens::connect(url, &tls, citizens::addresses_for(load.rate)?).await?;
        let requests = citizens::sign(&self.citizens, n)?;
        let services = if server == "issuer" {
            self.sample_services()?
        } else {
            Vec::new()
        };
        let before = self.sample(&process)?;
        let machine = self.meter.machine().ok();
        let started = std::time::Instant::now();
        let run = open_loop::schedule(
            load,
            requests,
            &format!("{server} IssueToken"),
            |i, request| {
                let mut client = clients[i % clients.len()].clone();
                async move {
                    let outcome = match client.issue_token(request).await {
                        Ok(_) => Outcome::Issued,
                        Err(status) => Outcome::Failed(format!("{:?}", status.code())),
                    };
                    (CodeKind::Fresh, outcome)
                }
            },
        )
        .await?;
        let wall = started.elapsed();
        let mut report = RunReport::of(server, "IssueToken", load.rate, load.in_flight_cap, &run);
        report.process = self.figures(process, before, report.answered, wall)?;
        report.services = self.service_figures(&services, report.answered, wall)?;
        report.machine = self.machine_figures(machine, report.answered, wall);
        Ok(report)
    }

    /// `n` victims for the propagation measurement: riders enrolled and linked like
    /// the others, one fresh code each (`None` for 0). Fresh ones for every run: a
    /// revoked rider stays revoked.
    async fn victims(&self, n: usize) -> Result<Option<Vec<propagation::Victim>>, LoadError> {
        if n == 0 {
            return Ok(None);
        }
        let riders = Riders::enrol(&self.target.riders, n).await?;
        Ok(Some(propagation::victims(
            &self.target.issuer,
            riders.subjects(),
        )?))
    }

    /// Stops what the session started.
    pub async fn stop(self) {
        drop(self.bare);
        drop(self.floor);
        drop(self.bare_signer);
        drop(self.sign_floor);
        self.target.stop().await;
    }

    /// The codes for `n` requests, the replayed ones spent at `gates`.
    async fn plan(
        &self,
        settings: &Settings,
        n: usize,
        gates: &[GateClient],
    ) -> Result<Vec<crate::codes::Planned>, LoadError> {
        let plan = codes::make(
            &self.target.issuer,
            &settings.mix.plan(n),
            self.riders.subjects(),
            unix_now(),
        )?;
        spend(gates, &plan.spend_first).await?;
        Ok(plan.requests)
    }

    /// One measured run: Verify (`streams` 0) or VerifyStream, with the process's CPU
    /// and memory read around it.
    async fn measured(
        &self,
        load: Load,
        server: &str,
        gates: &[GateClient],
        requests: Vec<crate::codes::Planned>,
        streams: usize,
        process: Measured,
    ) -> Result<RunReport, LoadError> {
        let services = if server == "bare" || server == "floor" {
            Vec::new()
        } else {
            self.sample_services()?
        };
        let before = self.sample(&process)?;
        let machine = self.meter.machine().ok();
        let started = std::time::Instant::now();
        let (api, run) = if streams == 0 {
            let run = open_loop::run(load, gates, requests, &run_id(server), server).await?;
            ("Verify", run)
        } else {
            let id = run_id(server);
            let run = stream_loop::run(
                load,
                gates,
                streams,
                requests,
                &id,
                &format!("{server} stream"),
            )
            .await?;
            ("VerifyStream", run)
        };
        let wall = started.elapsed();
        let name = match server {
            "bare" => "bare verify server",
            "floor" => "floor",
            _ => "verifier",
        };
        let mut report = RunReport::of(name, api, load.rate, load.in_flight_cap, &run);
        report.process = self.figures(process, before, report.answered, wall)?;
        report.services = self.service_figures(&services, report.answered, wall)?;
        report.machine = self.machine_figures(machine, report.answered, wall);
        Ok(report)
    }

    /// The report at `rate`: Verify on the verifier and the bare server, then
    /// VerifyStream on both when `settings.streams` is above zero. Each run gets its
    /// own codes (the verifier remembers the ones it allowed).
    pub async fn point(&self, settings: &Settings, rate: u32) -> Result<Report, LoadError> {
        let mut at_rate = settings.clone();
        at_rate.rate = rate;
        let n = at_rate.requests()?;
        let load = Load {
            rate,
            in_flight_cap: settings.in_flight_cap,
            drain: CALL_TIMEOUT + Duration::from_secs(10),
            progress: settings.progress,
        };
        let load_average = report::load_average();
        let verifier_process = self.target.process();

        let requests = self.plan(settings, n, &self.gates).await?;
        // The bare server gets the same codes: it keeps no replay marks.
        let bare_requests = self.bare.as_ref().map(|_| requests.clone());
        let floor_requests = self.floor.as_ref().map(|_| requests.clone());
        let victims = self.victims(settings.revocations).await?;
        let verifier_run = self.measured(
            load,
            "verifier",
            &self.gates,
            requests,
            0,
            verifier_process.clone(),
        );
        let (verifier, propagation) = match (victims, &self.target.revocation) {
            (Some(victims), Some(access)) => {
                // Spread over the run; each measured while the load goes on.
                let count = u32::try_from(victims.len()).unwrap_or(u32::MAX);
                let spacing = settings.duration / count.saturating_add(1);
                let gate = self.gates.first().ok_or_else(|| {
                    LoadError::NoGates("no gate to scan the victims' codes at".to_owned())
                })?;
                let (verifier, propagation) = tokio::join!(
                    verifier_run,
                    propagation::measure(access, gate, victims, spacing)
                );
                (verifier?, Some(propagation?))
            }
            (Some(_), None) => {
                return Err(LoadError::Settings(
                    "--revocations needs the stack's revocation service".to_owned(),
                ));
            }
            (None, _) => (verifier_run.await?, None),
        };
        let ceiling = match (&self.bare, bare_requests) {
            (Some((bare, gates)), Some(requests)) => Some(
                self.measured(load, "bare", gates, requests, 0, Some(bare.process()))
                    .await?,
            ),
            _ => None,
        };
        let floor = match (&self.floor, floor_requests) {
            (Some((floor, _, gates)), Some(requests)) => Some(
                self.measured(load, "floor", gates, requests, 0, Some(floor.process()))
                    .await?,
            ),
            _ => None,
        };

        let (mut stream, mut stream_ceiling, mut stream_floor) = (None, None, None);
        if settings.streams > 0 {
            let requests = self.plan(settings, n, &self.gates).await?;
            let bare_requests = self.bare.as_ref().map(|_| requests.clone());
            let floor_requests = self.floor.as_ref().map(|_| requests.clone());
            stream = Some(
                self.measured(
                    load,
                    "verifier",
                    &self.gates,
                    requests,
                    settings.streams,
                    verifier_process,
                )
                .await?,
            );
            if let (Some((bare, gates)), Some(requests)) = (&self.bare, bare_requests) {
                stream_ceiling = Some(
                    self.measured(
                        load,
                        "bare",
                        gates,
                        requests,
                        settings.streams,
                        Some(bare.process()),
                    )
                    .await?,
                );
            }
            if let (Some((floor, _, gates)), Some(requests)) = (&self.floor, floor_requests) {
                stream_floor = Some(
                    self.measured(
                        load,
                        "floor",
                        gates,
                        requests,
                        settings.streams,
                        Some(floor.process()),
                    )
                    .await?,
                );
            }
        }

        let (mut issue, mut issue_ceiling, mut issue_floor) = (None, None, None);
        if settings.citizens > 0 {
            let apps_url = self
                .target
                .apps
                .as_ref()
                .map(|a| a.endpoints.issuer.clone())
                .unwrap_or_default();
            issue = Some(
                self.issue(load, "issuer", &apps_url, n, self.target.issuer_process())
                    .await?,
            );
            if let Some(signer) = &self.bare_signer {
                issue_ceiling = Some(
                    self.issue(
                        load,
                        "bare sign server",
                        &signer.url(),
                        n,
                        Some(signer.process()),
                    )
                    .await?,
                );
            }
            if let Some(floor) = &self.sign_floor {
                issue_floor = Some(
                    self.issue(load, "sign floor", &floor.url(), n, Some(floor.process()))
                        .await?,
                );
            }
        }

        let target = &self.target;
        Ok(Report {
            target: if target.separate() {
                format!(
                    "the five services as separate processes on PostgreSQL and Redis (verifier {})",
                    target.url
                )
            } else if target.spawned() {
                format!("the dev stack in a child process ({})", target.url)
            } else if target.in_process() {
                format!("the in-process dev stack ({})", target.url)
            } else {
                target.url.clone()
            },
            load_average,
            duration_s: settings.duration.as_secs_f64(),
            mix: Report::mix_of(&settings.mix),
            gates: target.gates.iter().map(|g| g.id.clone()).collect(),
            ratios: ceiling.as_ref().map(|c| Ratios::of(&verifier, c)),
            floor_ratios: floor.as_ref().map(|c| Ratios::of(&verifier, c)),
            floor_over_bare: match (&floor, &ceiling) {
                (Some(f), Some(c)) => Some(Ratios::of(f, c)),
                _ => None,
            },
            floor_shape: floor.as_ref().and(settings.floor.clone()),
            floor,
            verifier,
            ceiling,
            streams: settings.streams,
            stream_ratios: match (&stream, &stream_ceiling) {
                (Some(s), Some(c)) => Some(Ratios::of(s, c)),
                _ => None,
            },
            stream_floor_ratios: match (&stream, &stream_floor) {
                (Some(s), Some(f)) => Some(Ratios::of(s, f)),
                _ => None,
            },
            stream,
            stream_ceiling,
            stream_floor,
            citizens: settings.citizens,
            issue_ratios: match (&issue, &issue_ceiling) {
                (Some(s), Some(c)) => Some(Ratios::of(s, c)),
                _ => None,
            },
            issue_floor_ratios: match (&issue, &issue_floor) {
                (Some(s), Some(f)) => Some(Ratios::of(s, f)),
                _ => None,
            },
            issue,
            issue_ceiling,
            issue_floor,
            propagation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, duration: Duration, cap: usize) -> Settings {
        Settings {
            target: TargetSpec::InProcess,
            rate,
            duration,
            mix: Mix::default(),
            in_flight_cap: cap,
            ceiling: false,
            floor: None,
            gate: None,
            streams: 0,
            citizens: 0,
            riders: 1,
            revocations: 0,
            progress: false,
        }
    }

    #[test]
    fn settings_give_the_request_count_or_say_what_is_wrong() {
        let secs = Duration::from_secs;
        assert_eq!(settings(500, secs(10), 64).requests().unwrap(), 5000);
        assert_eq!(
            settings(3, Duration::from_millis(1500), 1)
                .requests()
                .unwrap(),
            5
        );
        for bad in [
            settings(0, secs(10), 64),
            settings(500, Duration::from_millis(999), 64),
            settings(500, MAX_DURATION + secs(1), 64),
            settings(500, secs(10), 0),
            settings(u32::MAX, secs(10), 64),
            Settings {
                riders: 0,
                ..settings(500, secs(10), 64)
            },
            Settings {
                revocations: crate::propagation::MAX_REVOCATIONS + 1,
                ..settings(500, secs(10), 64)
            },
        ] {
            assert!(
                matches!(bad.requests(), Err(LoadError::Settings(_))),
                "{bad:?}"
            );
        }
    }
}
