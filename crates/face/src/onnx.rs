//! Running one ONNX file on the CPU with tract (pure Rust: nothing native to ship to a
//! counter or a phone; the choice and its figures are in docs/architecture.md, Face).
//!
//! The input shape is fixed when the model is loaded, so tract optimises the graph once
//! for it; every run then checks the input length against that shape.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::FaceError;

/// An optimised model with one fixed input shape (NCHW, f32).
pub(crate) struct OnnxModel {
    name: &'static str,
    plan: Arc<TypedSimplePlan>,
    shape: [usize; 4],
    output_names: Vec<String>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnnxModel({}, {:?})", self.name, self.shape)
    }
}

impl OnnxModel {
    /// Loads `path` for inputs of `shape`.
    pub(crate) fn load(
        name: &'static str,
        path: &Path,
        shape: [usize; 4],
    ) -> Result<Self, FaceError> {
        if !path.is_file() {
            return Err(FaceError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let fail = |e: TractError| FaceError::ModelLoad {
            model: name,
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
            .and_then(|m| m.into_optimized())
            .map_err(fail)?;
        let output_names = model
            .output_outlets()
            .map_err(fail)?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let plan = model.into_runnable().map_err(fail)?;
        Ok(Self {
            name,
            plan,
            shape,
            output_names,
        })
    }

    /// The input length a run takes (the product of the shape).
    pub(crate) fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The index of the output named `name`, if the model has one.
    pub(crate) fn output_index(&self, name: &str) -> Option<usize> {
        self.output_names.iter().position(|n| n == name)
    }

    /// Runs the model on `input` (NCHW, of [`OnnxModel::input_len`] values) and gives
    /// every output flattened.
    pub(crate) fn run(&self, input: Vec<f32>) -> Result<Vec<Vec<f32>>, FaceError> {
        let fail = |reason: String| FaceError::Inference {
            model: self.name,
            reason,
        };
        if input.len() != self.input_len() {
            return Err(fail(format!(
                "input of {} values, the model takes {}",
                input.len(),
                self.input_len()
            )));
        }
        let tensor = tract_ndarray::Array4::from_shape_vec(self.shape, input)
            .map_err(|e| fail(e.to_string()))?;
        let outputs = self
            .plan
            .run(tvec!(Tensor::from(tensor).into_tvalue()))
            .map_err(|e| fail(format!("{e:#}")))?;
        outputs
            .iter()
            .map(|o| {
                o.to_plain_array_view::<f32>()
                    .map(|v| v.iter().copied().collect())
                    .map_err(|e| fail(format!("{e:#}")))
            })
            .collect()
    }
}
