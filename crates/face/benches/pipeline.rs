//! The face pipeline's stages on a real photo, one thread: detection, alignment and
//! embedding, the whole pipeline from JPEG bytes, and, as the ceiling for embedding, a
//! bare tract run of the recognition model on a ready tensor.
//!
//! Needs the models (`scripts/fetch-face-models`; `CITYPASS_FACE_MODELS`).

use criterion::{Criterion, criterion_group, criterion_main};
use tract_onnx::prelude::*;

use citypass_face::model::ModelConfig;
use citypass_face::{FaceModels, FacePipeline, align, models_dir, photo};

const PHOTO: &[u8] = include_bytes!("../tests/photos/obama.jpg");

fn stages(c: &mut Criterion) {
    let config = ModelConfig::shipped(&models_dir());
    let pipeline = FacePipeline::load(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    let models = pipeline.models();
    let image = photo::decode(PHOTO).expect("the fixture decodes");
    let faces = models.detect(&image).expect("detection runs");
    let face = citypass_face::pipeline::choose_face(&faces, &config).expect("one face");
    let marks = models.landmarks(&image, &face).expect("landmarks run");
    let size = config.recogniser.size as u32;

    let mut group = c.benchmark_group("face");
    group.sample_size(20);
    group.bench_function("decode", |b| b.iter(|| photo::decode(PHOTO)));
    group.bench_function("detect", |b| b.iter(|| models.detect(&image)));
    group.bench_function("landmarks", |b| b.iter(|| models.landmarks(&image, &face)));
    group.bench_function("align_and_embed", |b| {
        b.iter(|| {
            let aligned = align::align(&image, &marks, &config.recogniser.reference, size)?;
            models.embed(&aligned)
        })
    });
    group.bench_function("whole_pipeline", |b| b.iter(|| pipeline.embed_photo(PHOTO)));

    // The ceiling: tract alone on a ready input tensor.
    let shape = [1, 3, config.recogniser.size, config.recogniser.size];
    let bare = tract_onnx::onnx()
        .model_for_path(&config.recogniser.path)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("the recognition model loads");
    let input = Tensor::from(tract_ndarray::Array4::<f32>::zeros(shape));
    group.bench_function("bare_tract_recognition", |b| {
        b.iter(|| bare.run(tvec!(input.clone().into_tvalue())))
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
