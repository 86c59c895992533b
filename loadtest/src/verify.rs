//! `citypass-loadtest verify`: one run from start to report.
//!
//! In order: the target (the in-process stack, or a running one's files); the codes,
//! all signed before anything is sent; the gates' connections, opened and checked;
//! the codes to be replayed, used once; the open-loop run against the verifier; then,
//! unless turned off, the same codes at the same rate from the same gates against
//! the bare verify server, and the ratios.

use std::time::Duration;

use citypass_token::{SecureRandom as _, SystemRandom, unix_now};
use tokio::sync::Semaphore;

use crate::ceiling::{BareVerifier, Ceiling};
use crate::codes::{self, CODE_LIFETIME};
use crate::error::LoadError;
use crate::gates::{self, CALL_TIMEOUT};
use crate::mix::Mix;
use crate::open_loop::{self, GateClient, Load};
use crate::record::Outcome;
use crate::report::{Ratios, Report, RunReport};
use crate::target::{Target, TargetSpec};

/// Longest run: the codes are signed before it and live [`CODE_LIFETIME`].
pub const MAX_DURATION: Duration = Duration::from_secs(CODE_LIFETIME - 60);
/// Most requests in one run (the codes are held in memory, about 300 bytes each).
pub const MAX_REQUESTS: u64 = 5_000_000;
/// Replayed codes spent at once before the run.
const SPEND_CONCURRENCY: usize = 32;

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

/// Uses each of `texts` once, from the gates in turn; each must be allowed.
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
            let answer = client
                .verify(request)
                .await
                .map(tonic::Response::into_inner);
            drop(slot);
            Outcome::of(&answer)
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

/// Runs the load `settings` describe and reports it.
pub async fn verify(settings: Settings) -> Result<Report, LoadError> {
    let n = settings.requests()?;
    let target = Target::start(&settings.target).await?;
    let result = load(&settings, n, &target).await;
    target.stop().await;
    result
}

async fn load(settings: &Settings, n: usize, target: &Target) -> Result<Report, LoadError> {
    let plan = codes::make(&target.issuer, &settings.mix.plan(n), unix_now())?;
    let load = Load {
        rate: settings.rate,
        in_flight_cap: settings.in_flight_cap,
        drain: CALL_TIMEOUT + Duration::from_secs(10),
    };
    let gates = gates::connect(&target.url, &target.gates).await?;
    spend(&gates, &plan.spend_first).await?;
    let ceiling_requests = settings.ceiling.then(|| plan.requests.clone());

    let run = open_loop::run(load, &gates, plan.requests, &run_id("verifier")).await?;
    let verifier = RunReport::of("verifier", settings.rate, settings.in_flight_cap, &run);

    let ceiling = match ceiling_requests {
        None => None,
        Some(requests) => {
            let bare = BareVerifier::new(target.issuer.key().public_key().as_bytes());
            let server = Ceiling::start(bare, target.server_tls.clone()).await?;
            let gates = gates::connect(&server.url(), &target.gates).await?;
            let run = open_loop::run(load, &gates, requests, &run_id("bare")).await?;
            Some(RunReport::of(
                "bare verify server",
                settings.rate,
                settings.in_flight_cap,
                &run,
            ))
        }
    };
    Ok(Report {
        target: if target.in_process() {
            format!("the in-process dev stack ({})", target.url)
        } else {
            target.url.clone()
        },
        duration_s: settings.duration.as_secs_f64(),
        mix: Report::mix_of(&settings.mix),
        gates: target.gates.iter().map(|g| g.id.clone()).collect(),
        ratios: ceiling.as_ref().map(|c| Ratios::of(&verifier, c)),
        verifier,
        ceiling,
    })
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
        ] {
            assert!(
                matches!(bad.requests(), Err(LoadError::Settings(_))),
                "{bad:?}"
            );
        }
    }
}
