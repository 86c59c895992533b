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
//! The model side (detect, align, embed, from ONNX files) sits behind the `model`
//! feature, so that the services never link an inference runtime: the image never
//! leaves the device that took it, only its embedding does.

#![forbid(unsafe_code)]

pub mod embedding;
pub mod gallery;
pub mod template;

pub use embedding::{DIMENSION, Embedding, EmbeddingError, Similarity};
pub use gallery::{Candidate, Decision, Gallery, MatchRule};
pub use template::{SealedTemplate, TemplateError, TemplateKeys};
