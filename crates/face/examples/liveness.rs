//! Prints the liveness model's score for every photo in a folder (default
//! `tests/photos`), for each output class: how the "live" class was found
//! (docs/face-models.md). Photos without a face print the pipeline's reason.
//!
//! cargo run --release -p citypass-face --example liveness [-- FOLDER]

use std::path::PathBuf;

use citypass_face::model::ModelConfig;
use citypass_face::{FacePipeline, models_dir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/photos")));
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    photos.sort();
    // One pipeline per class taken as "live": the same crop, the same softmax.
    let mut pipelines = Vec::new();
    for class in 0..3 {
        let mut config = ModelConfig::shipped(&models_dir());
        if let Some(liveness) = config.liveness.as_mut() {
            liveness.live_class = class;
        }
        pipelines.push((class, FacePipeline::load(config)?));
    }
    for photo in &photos {
        let bytes = std::fs::read(photo)?;
        let name = photo.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let mut line = format!("{name:<14}");
        for (class, pipeline) in &pipelines {
            match pipeline.check_photo(&bytes) {
                Ok(checked) => match checked.liveness {
                    Some(l) => line.push_str(&format!("  class {class}: {:.4}", l.score)),
                    None => line.push_str("  no liveness model"),
                },
                Err(e) => line.push_str(&format!("  class {class}: {e}")),
            }
        }
        println!("{line}");
    }
    Ok(())
}
