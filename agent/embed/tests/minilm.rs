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

/// Mean-pooled, L2-normalised sentence vectors from candle-transformers' own `BertModel`: an
/// implementation Valor's hand-written BERT shares no code with above candle-core.
fn reference_vectors(texts: &[&str]) -> Vec<Vec<f32>> {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};

    let dir = model_dir();
    let config: Config =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let vb = candle_nn::VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
        .unwrap();
    let model = BertModel::load(vb, &config).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    texts
        .iter()
        .map(|text| {
            let encoding = tokenizer.encode(*text, true).unwrap();
            // The shipped tokenizer pads to 128: the real tokens are those the mask keeps.
            let ids: Vec<u32> = (encoding.get_ids().iter().zip(encoding.get_attention_mask()))
                .filter(|(_, mask)| **mask == 1)
                .map(|(id, _)| *id)
                .take(256)
                .collect();
            let input = Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let types = input.zeros_like().unwrap();
            let states = model.forward(&input, &types, None).unwrap(); // [1, n, 384]
            let mean = states.mean(1).unwrap().squeeze(0).unwrap();
            let v: Vec<f32> = mean.to_vec1().unwrap();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// Valor's vectors for a fixed set of sentences match an independent implementation's, so the
/// hand-written BERT and its kernels stay correct.
#[test]
fn vectors_match_candle_transformers_bert() {
    let long = "The deploy pipeline builds the image, runs the migrations, and only then \
                switches traffic; if the health check fails twice the old version stays. "
        .repeat(4);
    let texts = [
        "A man is eating food.",
        "How did we fix the upload bug last week?",
        "sled or Postgres for the store?",
        "Der Hund schläft in der Sonne.",
        "猫はソファで寝ている。",
        "fn main() { println!(\"hello\"); }",
        "   spaces   around   ",
        "x",
        long.as_str(),
    ];
    let reference = reference_vectors(&texts);
    for precision in [valor_embed::Precision::F32, valor_embed::Precision::Fastest] {
        let embedder = Embedder::load_with(&model_dir(), precision).unwrap();
        let ours = embedder.embed(&texts).unwrap();
        for ((text, a), b) in texts.iter().zip(&ours).zip(&reference) {
            let similarity = cosine(a, b);
            let floor = match precision {
                valor_embed::Precision::F32 => 0.99999,
                valor_embed::Precision::Fastest => 0.999,
            };
            assert!(
                similarity > floor,
                "{precision:?} {text:?}: cosine {similarity}"
            );
            if precision == valor_embed::Precision::F32 {
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-3, "{text:?}: a component off by {worst}");
            }
        }
    }
}
