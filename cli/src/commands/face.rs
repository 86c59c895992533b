//! What the face commands share (`app face-enrol`, `counter face-enrol`, `gate scan
//! --face`): the purposes and the notice a consent is given to, and the photo turned
//! into an embedding on this machine.
//!
//! The photo never leaves the machine: the on-device pipeline (`citypass-face`, feature
//! `model`, behind this crate's default `face` feature) computes the embedding and a
//! liveness score here, and only the 512 numbers are sent. The models are fetched by
//! `scripts/fetch-face-models`, never shipped (docs/face-models.md).

use std::path::Path;

use citypass_proto::v1::FacePurpose;

/// The liveness model the shipped configuration runs, named in a face pass's request.
pub const LIVENESS_MODEL: &str = "fr_liveness.onnx (faceplugin-face-recognition-js 0.0.1)";

/// The version of the notice text below, recorded with each consent.
pub const NOTICE_VERSION: &str = "face-2026-06";

/// A face purpose, each its own consent.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PurposeArg {
    /// The 1:1 check at a hospital desk or service counter (stops a lent code).
    CounterCheck,
    /// Walking through the gates of the named stations and venues without a phone.
    FacePass,
}

impl From<PurposeArg> for FacePurpose {
    fn from(arg: PurposeArg) -> FacePurpose {
        match arg {
            PurposeArg::CounterCheck => FacePurpose::CounterCheck,
            PurposeArg::FacePass => FacePurpose::FacePass,
        }
    }
}

/// What a face enrolment consents to, the same for the app and the counter.
#[derive(Clone, clap::Args)]
pub struct ConsentArgs {
    /// The citizen (or their guardian) consents to the notice (printed without this
    /// flag, and nothing is sent).
    #[arg(long)]
    pub consent: bool,
    /// What the face is for (each purpose its own consent).
    #[arg(long, value_enum, default_value_t = PurposeArg::CounterCheck)]
    pub purpose: PurposeArg,
    /// Face pass only: the places it covers, `station:<id>` or `venue:<id>` with the
    /// gate registry's ids (e.g. `station:pingguoyuan,venue:dev-park`).
    #[arg(long, value_delimiter = ',', required_if_eq("purpose", "face-pass"))]
    pub places: Vec<String>,
    /// The version of the notice the citizen was shown.
    #[arg(long, default_value = NOTICE_VERSION)]
    pub notice_version: String,
}

impl ConsentArgs {
    /// Refuses places on a counter-check consent, and without `--consent` prints the
    /// notice and refuses with `refusal` (nothing is computed or sent).
    pub fn require(&self, refusal: &str) -> anyhow::Result<()> {
        if self.purpose == PurposeArg::CounterCheck && !self.places.is_empty() {
            anyhow::bail!("--places is for --purpose face-pass");
        }
        if !self.consent {
            print!("{}", notice(self.purpose, &self.places));
            anyhow::bail!("{refusal}");
        }
        Ok(())
    }
}

/// The purpose's name as on the command line.
pub fn purpose_name(purpose: FacePurpose) -> &'static str {
    match purpose {
        FacePurpose::CounterCheck => "counter-check",
        FacePurpose::FacePass => "face-pass",
        FacePurpose::Unspecified => "unspecified",
    }
}

/// The notice a citizen consents to (version [`NOTICE_VERSION`]): what is processed,
/// for what, where it goes, how to withdraw, and that declining changes nothing else.
pub fn notice(purpose: PurposeArg, places: &[String]) -> String {
    let what = match purpose {
        PurposeArg::CounterCheck => {
            "Purpose: counter check (counter-check). At a hospital desk or a government \
             service counter, the counter's camera compares your face with your enrolled \
             template to confirm that the code shown is yours."
                .to_owned()
        }
        PurposeArg::FacePass => format!(
            "Purpose: face pass (face-pass). The gates of {} compare your face with the \
             templates of the riders who consented there and let you through without a \
             phone; nowhere else.",
            if places.is_empty() {
                "the stations and venues you name (--places)".to_owned()
            } else {
                places.join(", ")
            }
        ),
    };
    format!(
        "Face recognition notice, version {NOTICE_VERSION} (a separate consent, 单独同意):\n\
         {what}\n\
         What is processed: a face template (512 numbers) computed from your photo on this \
         device; the photo itself is never sent and is not kept.\n\
         Where it goes: the identity service stores the template encrypted, for this \
         purpose only, while your consent lives; the verifier compares it.\n\
         Withdraw at any time: `citypass app face-withdraw` (or at a counter); the template \
         is deleted at once when your last face consent is withdrawn.\n\
         Declining or withdrawing changes nothing else: the QR code and your ID card \
         always work, and nobody may refuse you for it.\n\
         Children under 14: a guardian consents in person at a service counter.\n"
    )
}

/// A photo's face, computed here: its embedding and the liveness model's score.
pub struct LocalFace {
    pub embedding: Vec<f32>,
    /// The liveness score and whether it reaches the model's threshold (`None` when
    /// the configured models have no liveness model).
    pub liveness: Option<(f32, bool)>,
}

impl LocalFace {
    /// "liveness 0.99 (live)", for the display.
    pub fn liveness_line(&self) -> String {
        match self.liveness {
            Some((score, live)) => format!(
                "liveness {score:.3} ({}; the model's belief, not proof against spoofs)",
                if live { "live" } else { "NOT live" }
            ),
            None => "liveness not checked (no liveness model configured)".to_owned(),
        }
    }
}

/// The face in the photo at `path`, from the models in `citypass_face::models_dir()`.
/// A missing model names `scripts/fetch-face-models`; a photo the pipeline refuses
/// gives its reason (no face, several faces, too small, not an image).
#[cfg(feature = "face")]
pub fn from_photo(path: &Path) -> anyhow::Result<LocalFace> {
    use anyhow::Context as _;
    use citypass_face::{FacePipeline, ModelConfig, models_dir};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let pipeline = FacePipeline::load(ModelConfig::shipped(&models_dir()))
        .context("loading the face models")?;
    let checked = pipeline
        .check_photo(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(LocalFace {
        embedding: checked.embedding.values().to_vec(),
        liveness: checked.liveness.map(|l| (l.score, l.live)),
    })
}

/// Without the `face` feature there is no pipeline to compute an embedding with.
#[cfg(not(feature = "face"))]
pub fn from_photo(path: &Path) -> anyhow::Result<LocalFace> {
    let _ = path;
    anyhow::bail!(
        "this citypass was built without face support: build it with the default \
         features (cargo build -p citypass-cli)"
    )
}
