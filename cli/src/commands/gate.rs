//! `citypass gate`: a gate scanner simulator against a running verifier.
//!
//! `citypass gate scan --gate metro-entry-1 code.png` reads the QR from the PNG (or
//! takes the code text, or a file holding it), calls Verify with the gate's own
//! certificate (`keys/dev/pki/gate-<id>/`, made by `citypass dev` for its sample gates,
//! or by `citypass pki issue gate`), and prints the decision as a gate's display would.
//! The scene is the gate's, from the verifier's registry file unless `--scene` says.
//! `--face photo.jpg` adds the face before the counter's camera: its embedding,
//! computed here (the photo never leaves this machine), goes with the scan as
//! `live_face`, and the answer's face check (result, band, whether to check the ID
//! card) is printed. `--face photo.jpg` without a code is the 1:N face pass at a
//! face-pass gate: VerifyFace with the embedding and the liveness score computed here.
//! Exit status: 0 ALLOW, 1 DENY, 2 an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use citypass_proto::v1::verifier_service_client::VerifierServiceClient;
use citypass_proto::v1::{self as pb, VerifyRequest};
use citypass_runtime::{Tls, TlsConfig, UpstreamConfig};
use citypass_token::{SecureRandom as _, SystemRandom, kind_of};

use super::dev::VERIFIER_PORT;
use super::token::DENIED;

#[derive(clap::Subcommand)]
pub enum GateCommand {
    /// Scan a code at a gate: prints ALLOW or DENY <reason>.
    Scan {
        /// The gate's id (its certificate is in <pki-dir>/gate-<id>/).
        #[arg(long)]
        gate: String,
        /// A PNG of the QR, a file holding the code text, or the code text itself
        /// (none with --face: the 1:N face pass).
        code: Option<String>,
        /// A photo of the face before the camera (JPEG or PNG): with a code, the 1:1
        /// check against the holder's counter-enrolled face; alone, the face pass.
        #[arg(long, value_name = "PHOTO")]
        face: Option<PathBuf>,
        /// The scene to ask for (default: the gate's, from the registry file).
        #[arg(long)]
        scene: Option<String>,
        /// Metro only: entry or exit (default: the gate's direction).
        #[arg(long)]
        direction: Option<String>,
        /// The scan's id (default: a fresh random one; repeat one to retry a scan).
        #[arg(long)]
        scan_id: Option<String>,
        /// The verifier.
        #[arg(long, env = "CITYPASS_CLI_VERIFIER_URL", default_value_t = format!("https://127.0.0.1:{VERIFIER_PORT}"))]
        verifier_url: String,
        /// The dev PKI directory holding the gate's certificate.
        #[arg(long, default_value = "keys/dev/pki")]
        pki_dir: PathBuf,
        /// The verifier's gate registry, for the gate's scene.
        #[arg(long, default_value = "keys/dev/verifier/gates.yaml")]
        gates: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: GateCommand) -> anyhow::Result<ExitCode> {
    let GateCommand::Scan {
        gate,
        code,
        face,
        scene,
        direction,
        scan_id,
        verifier_url,
        pki_dir,
        gates,
        json,
    } = cmd;
    if code.is_none() && face.is_none() {
        anyhow::bail!("nothing to scan: give a code (a PNG, a file or the text), or --face");
    }
    let text = code.as_deref().map(read_code).transpose()?;
    // The face first: nothing is sent for a photo without a usable face.
    let local = face.as_deref().map(super::face::from_photo).transpose()?;
    let scene = match scene {
        Some(name) => citypass_token::Scene::from_name(&name)
            .with_context(|| format!("unknown scene {name}"))?,
        None => {
            let registry = std::fs::read_to_string(&gates)
                .with_context(|| format!("reading {} (or pass --scene)", gates.display()))?;
            citypass_verifier::Registry::parse(&registry)?
                .get(&gate)
                .map(|g| g.scene)
                .with_context(|| format!("{gate} is not in {} (pass --scene)", gates.display()))?
        }
    };
    let direction = match direction.as_deref() {
        None => pb::Direction::Unspecified,
        Some("entry") => pb::Direction::Entry,
        Some("exit") => pb::Direction::Exit,
        Some(other) => anyhow::bail!("direction {other}: entry or exit"),
    };
    let scan_id = match scan_id {
        Some(id) => id,
        None => {
            let mut bytes = [0u8; 16];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("no randomness"))?;
            hex::encode(bytes)
        }
    };
    let tls = Tls::from_files(&TlsConfig::in_dir(&pki_dir.join(format!("gate-{gate}"))))
        .with_context(|| format!("the certificate of gate {gate} in {}", pki_dir.display()))?;
    let live_face = local.as_ref().map(|f| pb::LiveFace {
        embedding: f.embedding.clone(),
    });
    // A code: Verify (with the face, the counter's 1:1 check). A face alone: the 1:N
    // face pass, VerifyFace, with the liveness computed here.
    let request = match text {
        Some(text) => Scan::Code(VerifyRequest {
            gate_id: gate.clone(),
            scene: citypass_proto::scene::to_api(scene),
            scan_id: scan_id.clone(),
            qr_text: text,
            direction: direction as i32,
            live_face,
            ..VerifyRequest::default()
        }),
        None => Scan::Face(pb::VerifyFaceRequest {
            scan_id: scan_id.clone(),
            live_face,
            liveness: local
                .as_ref()
                .and_then(|f| f.liveness)
                .map(|(score, _)| pb::Liveness {
                    checked: true,
                    score,
                    model: super::face::LIVENESS_MODEL.to_owned(),
                }),
            direction: direction as i32,
        }),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let response = runtime.block_on(async {
        let channel = UpstreamConfig::new(verifier_url.clone())
            .channel(Some(&tls))
            .context("the verifier's URL")?;
        let mut client = VerifierServiceClient::new(channel);
        let (rpc, answer) = match request {
            Scan::Code(request) => ("Verify", client.verify(request).await),
            Scan::Face(request) => ("VerifyFace", client.verify_face(request).await),
        };
        answer.map(tonic::Response::into_inner).map_err(|status| {
            if rpc == "VerifyFace" && status.code() == tonic::Code::Unimplemented {
                anyhow::anyhow!(
                    "VerifyFace at {verifier_url}: this verifier does not serve the face pass \
                     yet (UNIMPLEMENTED); scan a code"
                )
            } else {
                anyhow::anyhow!(
                    "{rpc} at {verifier_url}: {:?} {}",
                    status.code(),
                    status.message()
                )
            }
        })
    })?;
    let allowed = response.decision() == pb::Decision::Allow;
    let reason = if allowed {
        String::new()
    } else {
        response
            .deny_reason()
            .as_str_name()
            .trim_start_matches("DENY_REASON_")
            .to_ascii_lowercase()
    };
    let age = |d: Option<citypass_proto::prost_types::Duration>| {
        d.map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
    };
    if json {
        let line = serde_json::json!({
            "gate": gate,
            "scan_id": scan_id,
            "decision": if allowed { "allow" } else { "deny" },
            "reason": if allowed { serde_json::Value::Null } else { reason.clone().into() },
            "code_kind": response.code_kind().as_str_name().trim_start_matches("CODE_KIND_").to_ascii_lowercase(),
            "idempotent_replay": response.idempotent_replay,
            "revocation_epoch": response.revocation_epoch,
            "revocation_age_s": age(response.revocation_age),
            "key_set_age_s": age(response.key_set_age),
            "fail_open": response.fail_open,
            "scene_result": scene_json(response.scene_result.as_ref()),
            "face_check": face_json(response.face_check.as_ref()),
            "liveness": local.as_ref().and_then(|f| f.liveness).map(|(score, live)| serde_json::json!({"score": score, "live": live})),
        });
        println!("{line}");
    } else {
        if allowed {
            println!("ALLOW  (gate {gate}, scene {})", scene.name());
        } else {
            println!("DENY {reason}  (gate {gate}, scene {})", scene.name());
        }
        if let Some(shown) = scene_line(response.scene_result.as_ref()) {
            println!("  {shown}");
        }
        if let Some(check) = response.face_check.as_ref() {
            for line in face_lines(check) {
                println!("  {line}");
            }
        }
        if let Some(local) = &local {
            println!("  {}", local.liveness_line());
        }
        if response.fail_open {
            println!("  allowed under the scene's fail-open policy (a dependency was down)");
        }
        println!(
            "  revocation epoch {}, {:.1} s old; key set {:.1} s old{}",
            response.revocation_epoch,
            age(response.revocation_age).unwrap_or(f64::NAN),
            age(response.key_set_age).unwrap_or(f64::NAN),
            if response.idempotent_replay {
                "; a retried scan: the first answer"
            } else {
                ""
            }
        );
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DENIED)
    })
}

/// What a scan presents: a code (with or without a face) or a face alone.
enum Scan {
    Code(VerifyRequest),
    Face(pb::VerifyFaceRequest),
}

/// What the gate's display shows of the scene result.
fn scene_line(result: Option<&pb::verify_response::SceneResult>) -> Option<String> {
    use pb::verify_response::SceneResult as R;
    Some(match result? {
        R::Hospital(h) => format!(
            "patient {}; medical insurance {}",
            h.patient_pseudonym,
            if h.medical_insurance_linked {
                "linked"
            } else {
                "not linked"
            }
        ),
        R::Scenic(s) => format!(
            "visitor {}; entry {} today; {} places left",
            s.venue_pseudonym, s.entries_today, s.remaining_capacity
        ),
        R::Government(g) => format!(
            "{} ({}); government file key {}",
            g.masked_name,
            g.assurance_level()
                .as_str_name()
                .trim_start_matches("ASSURANCE_LEVEL_")
                .to_ascii_lowercase(),
            g.government_pseudonym
        ),
        R::Transit(t) => format!(
            "trip {}; fare {}; {}",
            t.trip_id,
            super::payments::yuan(t.fare_charged.as_ref()),
            t.fare_class()
                .as_str_name()
                .trim_start_matches("FARE_CLASS_")
                .to_ascii_lowercase()
        ),
    })
}

/// Short lower-case name of a proto enum value (`FACE_RESULT_NO_MATCH` → `no_match`).
fn short(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix).to_ascii_lowercase()
}

/// What the counter's display shows of the face check.
fn face_lines(check: &pb::FaceCheck) -> Vec<String> {
    let result = check
        .result()
        .as_str_name()
        .trim_start_matches("FACE_RESULT_");
    let band = match check.band() {
        pb::FaceScoreBand::Unspecified => String::new(),
        band => format!(" (band {})", short(band.as_str_name(), "FACE_SCORE_BAND_")),
    };
    let mut lines = vec![format!("face {result}{band}")];
    if check.id_card_required {
        lines.push("check the ID card: the face did not confirm the holder".to_owned());
    }
    lines
}

/// The face check as JSON (`null` when the answer has none).
fn face_json(check: Option<&pb::FaceCheck>) -> serde_json::Value {
    match check {
        None => serde_json::Value::Null,
        Some(c) => serde_json::json!({
            "result": short(c.result().as_str_name(), "FACE_RESULT_"),
            "band": match c.band() {
                pb::FaceScoreBand::Unspecified => serde_json::Value::Null,
                band => short(band.as_str_name(), "FACE_SCORE_BAND_").into(),
            },
            "id_card_required": c.id_card_required,
        }),
    }
}

/// The scene result as JSON (`null` when none).
fn scene_json(result: Option<&pb::verify_response::SceneResult>) -> serde_json::Value {
    use pb::verify_response::SceneResult as R;
    match result {
        None => serde_json::Value::Null,
        Some(R::Hospital(h)) => serde_json::json!({
            "hospital": {
                "patient_pseudonym": h.patient_pseudonym,
                "medical_insurance_linked": h.medical_insurance_linked,
            }
        }),
        Some(R::Scenic(s)) => serde_json::json!({
            "scenic": {
                "venue_pseudonym": s.venue_pseudonym,
                "entries_today": s.entries_today,
                "remaining_capacity": s.remaining_capacity,
            }
        }),
        Some(R::Government(g)) => serde_json::json!({
            "government": {
                "masked_name": g.masked_name,
                "assurance_level": g.assurance_level().as_str_name(),
                "government_pseudonym": g.government_pseudonym,
            }
        }),
        Some(R::Transit(t)) => serde_json::json!({
            "transit": {
                "trip_id": t.trip_id,
                "fare_minor_units": t.fare_charged.as_ref().map(|m| m.minor_units),
                "currency": t.fare_charged.as_ref().map(|m| m.currency_code.clone()),
                "charge_status": t.charge_status().as_str_name(),
                "transit_account": t.transit_account,
                "fare_class": t.fare_class().as_str_name(),
            }
        }),
    }
}

/// The code: the text itself, a PNG of its QR, or a file holding the text.
fn read_code(arg: &str) -> anyhow::Result<String> {
    if kind_of(arg).is_ok() {
        return Ok(arg.to_owned());
    }
    let path = Path::new(arg);
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"\x89PNG") {
        return scan_png(&bytes).with_context(|| format!("reading the QR in {}", path.display()));
    }
    let text = String::from_utf8(bytes).context("the code file is not text")?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// The text of the one QR symbol in a PNG.
fn scan_png(bytes: &[u8]) -> anyhow::Result<String> {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info()?;
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples() * info.bit_depth as usize / 8;
    anyhow::ensure!(
        info.bit_depth == png::BitDepth::Eight,
        "only 8-bit PNGs are read"
    );
    let stride = info.line_size;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        buffer[y * stride + x * channels]
    });
    let grids = image.detect_grids();
    let grid = grids.first().context("no QR code found")?;
    let (_, content) = grid.decode().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fares travel in fen; the display shows yuan, as `citypass app trips` does.
    #[test]
    fn a_face_check_shows_its_result_band_and_the_id_card_when_required() {
        let check = pb::FaceCheck {
            result: pb::FaceResult::NoMatch as i32,
            band: pb::FaceScoreBand::None as i32,
            id_card_required: true,
        };
        assert_eq!(
            face_lines(&check),
            [
                "face NO_MATCH (band none)",
                "check the ID card: the face did not confirm the holder"
            ]
        );
        let matched = pb::FaceCheck {
            result: pb::FaceResult::Match as i32,
            band: pb::FaceScoreBand::High as i32,
            id_card_required: false,
        };
        assert_eq!(face_lines(&matched), ["face MATCH (band high)"]);
        assert_eq!(face_json(Some(&matched))["result"], "match");
    }

    #[test]
    fn a_transit_result_shows_its_fare_in_yuan() {
        let result = pb::verify_response::SceneResult::Transit(pb::TransitResult {
            trip_id: "t-1".to_owned(),
            fare_charged: Some(pb::Money {
                minor_units: 500,
                currency_code: "CNY".to_owned(),
            }),
            fare_class: pb::FareClass::Adult as i32,
            ..pb::TransitResult::default()
        });
        assert_eq!(
            scene_line(Some(&result)).as_deref(),
            Some("trip t-1; fare 5.00 CNY; adult")
        );
    }
}
