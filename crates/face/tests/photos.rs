//! The whole pipeline on real photos (public domain, `tests/photos/README.md`) with the
//! shipped models (`scripts/fetch-face-models`, found through `CITYPASS_FACE_MODELS` or
//! the tools directory; a missing model fails the test with the fetch command).

use std::io::Cursor;
use std::sync::OnceLock;

use image::{ImageFormat, RgbImage, imageops};

use citypass_face::model::ModelConfig;
use citypass_face::{Embedding, FaceError, FaceModels, FacePipeline, models_dir, photo};

fn pipeline() -> &'static FacePipeline {
    static PIPELINE: OnceLock<FacePipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        FacePipeline::load(ModelConfig::shipped(&models_dir()))
            .unwrap_or_else(|e| panic!("the shipped face models: {e}"))
    })
}

fn bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/photos/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn embed(name: &str) -> Embedding {
    pipeline()
        .embed_photo(&bytes(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn threshold() -> f32 {
    pipeline().models().config().recogniser.match_threshold
}

const OBAMA: [&str; 3] = ["obama.jpg", "obama2.jpg", "obama3.jpg"];
const OTHERS: [&str; 2] = ["biden.jpg", "astronaut.jpg"];

#[test]
fn the_same_person_matches_across_photos() {
    let embeddings: Vec<_> = OBAMA.iter().map(|n| embed(n)).collect();
    for (i, a) in embeddings.iter().enumerate() {
        for (j, b) in embeddings.iter().enumerate().skip(i + 1) {
            let (same, score) = pipeline().same_person(a, b);
            assert!(
                same,
                "{} and {}: cosine {:.3} below {}",
                OBAMA[i],
                OBAMA[j],
                score.0,
                threshold()
            );
        }
    }
}

#[test]
fn different_people_do_not_match() {
    let people: Vec<_> = OBAMA
        .iter()
        .chain(&OTHERS)
        .map(|n| (*n, embed(n)))
        .collect();
    for (i, (name_a, a)) in people.iter().enumerate() {
        for (name_b, b) in people.iter().skip(i + 1) {
            let one_is_obama =
                name_a.starts_with("obama") as u8 + name_b.starts_with("obama") as u8;
            if one_is_obama == 2 {
                continue;
            }
            let (same, score) = pipeline().same_person(a, b);
            assert!(
                !same,
                "{name_a} and {name_b}: cosine {:.3} at or above {}",
                score.0,
                threshold()
            );
        }
    }
}

#[test]
fn a_photo_gives_the_same_embedding_every_time() {
    let (a, b) = (embed("biden.jpg"), embed("biden.jpg"));
    assert!(a.similarity(&b).0 > 0.9999);
}

#[test]
fn photos_without_a_face_are_refused_as_such() {
    for name in ["coffee.jpg", "rocket.jpg"] {
        match pipeline().embed_photo(&bytes(name)) {
            Err(FaceError::NoFace) => {}
            other => panic!("{name}: {other:?}, expected NoFace"),
        }
    }
}

#[test]
fn bytes_that_are_not_a_photo_are_refused_as_such() {
    for garbage in [b"".to_vec(), b"\x89PNG garbage".to_vec(), vec![0xA5; 5000]] {
        assert!(matches!(
            pipeline().embed_photo(&garbage),
            Err(FaceError::NotAnImage)
        ));
    }
    // A JPEG cut short decodes to what it holds (its first rows, grey below): no face.
    let mut truncated = bytes("obama.jpg");
    truncated.truncate(400);
    assert!(matches!(
        pipeline().embed_photo(&truncated),
        Err(FaceError::NoFace)
    ));
}

#[test]
fn two_people_side_by_side_are_refused_and_a_small_face_too() {
    // The same portrait twice, side by side (once mirrored): two faces of one size.
    let a = photo::decode(&bytes("obama.jpg")).unwrap();
    let b = imageops::flip_horizontal(&a);
    let height = a.height();
    let mut both = RgbImage::new(a.width() + b.width(), height);
    imageops::replace(&mut both, &a, 0, 0);
    imageops::replace(&mut both, &b, i64::from(a.width()), 0);
    let mut png = Vec::new();
    both.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    match pipeline().embed_photo(&png) {
        Err(FaceError::SeveralFaces) => {}
        other => panic!("two people: {other:?}, expected SeveralFaces"),
    }

    // The astronaut's photo shrunk to 96 pixels: her face is a few dozen pixels across.
    let small = imageops::resize(
        &photo::decode(&bytes("astronaut.jpg")).unwrap(),
        96,
        96,
        imageops::FilterType::Triangle,
    );
    match pipeline().embed_image(&small) {
        Err(FaceError::FaceTooSmall { side, minimum }) => assert!(side < minimum),
        Err(FaceError::NoFace) => {}
        other => panic!("a small face: {other:?}, expected FaceTooSmall (or NoFace)"),
    }
}

#[test]
fn a_missing_model_names_the_fetch_script() {
    let config = ModelConfig::shipped(std::path::Path::new("/nonexistent/face-models"));
    let error = FacePipeline::load(config).err().expect("no models there");
    assert!(matches!(error, FaceError::ModelMissing { .. }));
    assert!(error.to_string().contains("scripts/fetch-face-models"));
}

/// The liveness scores of the real photos (docs/face-models.md records them). These are
/// camera photos of people, so the model should score them live; no spoof photo exists
/// among the fixtures, so nothing here shows that a spoof is refused.
#[test]
fn real_photos_are_scored_live_with_their_embedding() {
    for name in OBAMA.iter().chain(&OTHERS) {
        let checked = pipeline()
            .check_photo(&bytes(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let liveness = checked
            .liveness
            .expect("the shipped models include liveness");
        assert!(
            (0.0..=1.0).contains(&liveness.score),
            "{name}: {}",
            liveness.score
        );
        assert!(liveness.live, "{name}: liveness {:.3}", liveness.score);
        // The same face as embed_photo's.
        assert!(
            checked.embedding.similarity(&embed(name)).0 > 0.9999,
            "{name}"
        );
    }
    for name in ["coffee.jpg", "rocket.jpg"] {
        assert!(matches!(
            pipeline().check_photo(&bytes(name)),
            Err(FaceError::NoFace)
        ));
    }
}

#[test]
fn without_a_liveness_model_photos_are_embedded_without_a_score() {
    let mut config = ModelConfig::shipped(&models_dir());
    config.liveness = None;
    let pipeline = FacePipeline::load(config).unwrap_or_else(|e| panic!("{e}"));
    let checked = pipeline.check_photo(&bytes("biden.jpg")).unwrap();
    assert_eq!(checked.liveness, None);
}
