//! What can go wrong between a photo and an embedding, as one error type, so a counter
//! or an app can tell a person what to do (another photo, closer, one face) without
//! guessing from text. No variant carries pixels, embeddings or who is in the photo.

use std::path::PathBuf;

use thiserror::Error;

use crate::EmbeddingError;

/// A photo that gave no embedding, or a model that could not run.
#[derive(Debug, Error)]
pub enum FaceError {
    /// A model file is not where the configuration says (the shipped models are not in
    /// the repository: `scripts/fetch-face-models` puts them in the tools directory).
    #[error(
        "face model file {path} not found: run scripts/fetch-face-models, or set \
         CITYPASS_FACE_MODELS to the folder holding the ONNX files"
    )]
    ModelMissing { path: PathBuf },
    /// A model file that is not a usable ONNX model of the configured input size.
    #[error("the {model} model in {path} could not be loaded: {reason}")]
    ModelLoad {
        model: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A model that ran but failed, or gave outputs of another shape than expected.
    #[error("the {model} model failed: {reason}")]
    Inference { model: &'static str, reason: String },
    /// A configuration no model can run with (a zero input size, a zero deviation).
    #[error("invalid face model configuration: {0}")]
    Config(&'static str),
    /// The bytes are not a JPEG or PNG image (or a damaged one).
    #[error("not a JPEG or PNG image")]
    NotAnImage,
    /// An image too large to decode here (a decompression bomb, or a camera's raw size).
    #[error("the photo is larger than {max_side} pixels on a side or {max_megabytes} MB decoded")]
    PhotoTooLarge { max_side: u32, max_megabytes: u32 },
    /// No face found.
    #[error("no face found in the photo")]
    NoFace,
    /// Two or more faces of similar size: which person presents is not known.
    #[error("more than one face in the photo: take one with a single person in front")]
    SeveralFaces,
    /// The face is too small for a reliable embedding.
    #[error("the face is {side} pixels across, at least {minimum} are needed: come closer")]
    FaceTooSmall { side: u32, minimum: u32 },
    /// Landmarks from which no alignment follows (all at one point).
    #[error("the face could not be aligned")]
    NotAligned,
    /// The recognition model's output is not a usable embedding.
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
}
