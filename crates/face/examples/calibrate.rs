//! Chooses the match threshold from photos: embeds every photo in a folder (default
//! `tests/photos`; a photo's person is its file name without digits and extension, so
//! `obama2.jpg` is `obama`), scores every pair, and prints the pairs, the false-accept
//! and false-reject rates at the configured threshold, and the range of thresholds that
//! separates the pairs seen.
//!
//! cargo run --release -p citypass-face --example calibrate [-- FOLDER [THRESHOLD]]

use std::path::PathBuf;
use std::time::Instant;

use citypass_face::model::ModelConfig;
use citypass_face::{FaceModels, FacePipeline, models_dir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/photos")));
    let started = Instant::now();
    let pipeline = FacePipeline::load(ModelConfig::shipped(&models_dir()))?;
    println!(
        "models loaded in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let threshold = match args.next() {
        Some(t) => t.parse()?,
        None => pipeline.models().config().recogniser.match_threshold,
    };

    let mut names: Vec<PathBuf> = std::fs::read_dir(&folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    names.sort();
    let mut embedded = Vec::new();
    for path in &names {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let started = Instant::now();
        match pipeline.embed_photo(&std::fs::read(path)?) {
            Ok(e) => {
                println!(
                    "{file}: embedded in {:.0} ms",
                    started.elapsed().as_secs_f64() * 1e3
                );
                let person: String = file
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .collect();
                embedded.push((file, person, e));
            }
            Err(e) => println!("{file}: refused: {e}"),
        }
    }

    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    println!("\npairs (cosine):");
    for (i, (fa, pa, ea)) in embedded.iter().enumerate() {
        for (fb, pb, eb) in embedded.iter().skip(i + 1) {
            let score = ea.similarity(eb).0;
            let same = pa == pb;
            println!(
                "  {fa:>16} {fb:>16}  {score:+.3}  {}",
                if same { "same person" } else { "different" }
            );
            if same {
                genuine.push(score)
            } else {
                impostor.push(score)
            }
        }
    }
    let rejected = genuine.iter().filter(|s| **s < threshold).count();
    let accepted = impostor.iter().filter(|s| **s >= threshold).count();
    let rate = |n: usize, of: usize| {
        if of == 0 {
            0.0
        } else {
            100.0 * n as f64 / of as f64
        }
    };
    let lowest_genuine = genuine.iter().copied().fold(f32::INFINITY, f32::min);
    let highest_impostor = impostor.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    println!(
        "\nsame-person pairs: {}, lowest {lowest_genuine:.3}",
        genuine.len()
    );
    println!(
        "different-person pairs: {}, highest {highest_impostor:.3}",
        impostor.len()
    );
    println!(
        "at threshold {threshold:.3}: false rejects {rejected}/{} ({:.1} %), false accepts {accepted}/{} ({:.1} %)",
        genuine.len(),
        rate(rejected, genuine.len()),
        impostor.len(),
        rate(accepted, impostor.len())
    );
    if lowest_genuine > highest_impostor {
        println!(
            "thresholds in ({highest_impostor:.3}, {lowest_genuine:.3}] separate these pairs; midpoint {:.3}",
            (highest_impostor + lowest_genuine) / 2.0
        );
    } else {
        println!("no threshold separates these pairs");
    }
    Ok(())
}
