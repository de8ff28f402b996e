//! The real all-MiniLM-L6-v2 (installed by scripts/setup): known similarities.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use valor_embed::{EmbedError, Embedder, cosine};

fn model_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
}

#[test]
fn known_similarities_match_sentence_transformers() {
    let embedder = Embedder::load(&model_dir()).unwrap();
    assert_eq!(embedder.dim(), 384);
    let texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
        "A man is eating food.",
    ];
    let v = embedder.embed(&texts).unwrap();
    for vector in &v {
        assert_eq!(vector.len(), 384);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let close = cosine(&v[0], &v[1]);
    assert!((close - 0.7553).abs() < 0.005, "cos = {close}");
    assert!(cosine(&v[0], &v[2]) < 0.2);
    // Batching and padding do not change a text's vector.
    assert!((cosine(&v[0], &v[3]) - 1.0).abs() < 1e-5);
    let alone = embedder.embed(&["A man is eating food."]).unwrap();
    assert!((cosine(&alone[0], &v[0]) - 1.0).abs() < 1e-5);
}

#[test]
fn a_missing_model_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(
        err,
        EmbedError::Missing {
            file: "config.json",
            ..
        }
    ));
    assert!(err.to_string().contains("run scripts/setup"), "{err}");
}

#[test]
fn bf16_products_keep_the_vectors_of_fp32() {
    use valor_embed::Precision;
    let fast = Embedder::load_with(&model_dir(), Precision::Fastest).unwrap();
    let exact = Embedder::load_with(&model_dir(), Precision::F32).unwrap();
    if !valor_embed::bf16::supported() {
        assert_eq!(fast.model_id(), exact.model_id());
        return;
    }
    assert_eq!(fast.model_id(), format!("{}+bf16", exact.model_id()));
    let corpus = valor_fakes::corpus::sentences(3, 300);
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let (a, b) = (fast.embed(&texts).unwrap(), exact.embed(&texts).unwrap());
    let similarities: Vec<f32> = a.iter().zip(&b).map(|(x, y)| cosine(x, y)).collect();
    let worst = similarities.iter().copied().fold(1.0f32, f32::min);
    let mean = similarities.iter().sum::<f32>() / similarities.len() as f32;
    eprintln!("bf16 vs fp32 over 300 sentences: mean cosine {mean:.5}, worst {worst:.5}");
    assert!(worst > 0.999 && mean > 0.9999, "mean {mean}, worst {worst}");
}
