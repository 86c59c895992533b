//! citypass-face: face templates for the opt-in face checks (1:1 at counters, 1:N face
//! pass at gates).
//!
//! - [`embedding`]: the L2-normalised embedding a face model gives, checked on the way
//!   in (dimension, finite, unit length) and compared by cosine similarity. Identity
//!   stores it (encrypted), the verifier compares it; neither needs the model.
//! - [`gallery`]: the enrolled embeddings a gate matches a live face against (1:N),
//!   brute force over contiguous rows, with the threshold-and-margin rule.
//! - [`template`]: an embedding sealed with AES-256-GCM under a template key with an
//!   id, bound to its subject: what identity stores and the verifier opens.
//!
//! The model side sits behind the `model` feature, so that the services never link an
//! inference runtime: the image never leaves the device that took it, only its
//! embedding does. [`pipeline`] turns photo bytes into an embedding: [`photo`]
//! (decode), [`detect`], [`landmarks`], [`align`], and the recognition model
//! ([`model`]: the [`FaceModels`] seam and [`ModelConfig`], so a city plugs in a
//! certified model), run on the CPU by tract; [`liveness`] scores whether the face is
//! a live person's (the model's belief only: see its documentation).

#![forbid(unsafe_code)]

pub mod embedding;
pub mod gallery;
pub mod template;

#[cfg(feature = "model")]
pub mod align;
#[cfg(feature = "model")]
pub mod config;
#[cfg(feature = "model")]
pub mod detect;
#[cfg(feature = "model")]
mod embed;
#[cfg(feature = "model")]
mod error;
#[cfg(feature = "model")]
pub mod landmarks;
#[cfg(feature = "model")]
pub mod liveness;
#[cfg(feature = "model")]
pub mod model;
#[cfg(feature = "model")]
mod onnx;
#[cfg(feature = "model")]
pub mod photo;
#[cfg(feature = "model")]
pub mod pipeline;

pub use embedding::{DIMENSION, Embedding, EmbeddingError, Similarity};
pub use gallery::{Candidate, Decision, Gallery, MatchRule};
pub use template::{SealedTemplate, TemplateChannel, TemplateError, TemplateKeys};

#[cfg(feature = "model")]
pub use error::FaceError;
#[cfg(feature = "model")]
pub use liveness::Liveness;
#[cfg(feature = "model")]
pub use model::{FaceModels, ModelConfig, OnnxFaceModels, models_dir};
#[cfg(feature = "model")]
pub use pipeline::{Checked, FacePipeline};
