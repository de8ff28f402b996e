//! A tiny BERT for fast tests: random weights, its own config and vocabulary, written in the
//! same three files as the real model so tests go through the same loading code. Its vectors
//! mean little, but they are deterministic, unit length, and texts sharing words come out
//! closer than texts that share none.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::{Value, json};

use crate::EmbedError;

const HIDDEN: usize = 32;
const LAYERS: usize = 2;
const HEADS: usize = 2;
const INTERMEDIATE: usize = 64;
const POSITIONS: usize = 512;
const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
/// Whole words in the vocabulary; anything else is spelled with letters and `##` pieces.
const WORDS: &str = "the a an and or of to in on at for with is are was be it this that you \
    i we they he she my your our can please why how what when where who find check fix look \
    into need want send write read call book buy order remind tomorrow today week weekend \
    morning evening service page api app job bot model pipeline database replica backup \
    billing login search payment image invoice error timeout crash slow memory leak deploy \
    test tests flaky race disk full time zone email emails duplicate customers users team \
    report link article video blog post book rust async tokio python vector bread coffee \
    marathon rome solar japanese chess chain table friday flight berlin lisbon passport \
    dentist kids football shoes plants slides gym numbers accountant";

fn model_error(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model(e.to_string())
}

/// The vocabulary: special tokens, whole words, letters, digits and their `##` forms.
fn vocabulary() -> Vec<String> {
    let mut vocab: Vec<String> = SPECIAL.iter().map(|s| (*s).to_owned()).collect();
    vocab.extend(WORDS.split_whitespace().map(str::to_owned));
    let symbols = "abcdefghijklmnopqrstuvwxyz0123456789.,?!:;'\"-#/()";
    for c in symbols.chars() {
        vocab.push(c.to_string());
        vocab.push(format!("##{c}"));
    }
    let mut seen = std::collections::HashSet::new();
    vocab.retain(|w| seen.insert(w.clone()));
    vocab
}

fn tokenizer_json(vocab: &[String]) -> Value {
    let ids: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), json!(i)))
        .collect();
    let special = |name: &str| {
        let id = vocab.iter().position(|w| w == name).unwrap_or(0);
        json!({"id": id, "content": name, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let piece = |name: &str| json!({"SpecialToken": {"id": name, "type_id": 0}});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": SPECIAL.iter().map(|s| special(s)).collect::<Vec<_>>(),
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [piece("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, piece("[SEP]")],
            "pair": [piece("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, piece("[SEP]"),
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids}
    })
}

/// Deterministic values in about [-scale, scale].
fn random(seed: &mut u64, count: usize, scale: f32) -> Vec<f32> {
    (0..count)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Writes `config.json`, `tokenizer.json` and `model.safetensors` of a tiny BERT into `dir`.
/// Another `seed` gives other weights (a "changed model").
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<(), EmbedError> {
    let write_error = |path: &Path, e: &dyn std::fmt::Display| EmbedError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, &e))?;
    let vocab = vocabulary();
    let config = json!({
        "vocab_size": vocab.len(), "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": INTERMEDIATE, "hidden_act": "gelu",
        "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "model_type": "bert"
    });
    for (name, value) in [
        ("config.json", config),
        ("tokenizer.json", tokenizer_json(&vocab)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).map_err(|e| write_error(&path, &e))?;
    }
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    // Words weigh most, positions and the layers little: shared words mean closer vectors.
    let mut add = |name: String, shape: &[usize], fill: Option<f32>| -> Result<(), EmbedError> {
        let count = shape.iter().product();
        let scale = if name.contains("word_embeddings") {
            1.0
        } else {
            0.05
        };
        let data = match fill {
            Some(value) => vec![value; count],
            None => random(&mut state, count, scale),
        };
        let tensor = Tensor::from_vec(data, shape, &Device::Cpu).map_err(model_error)?;
        tensors.insert(name, tensor);
        Ok(())
    };
    let e = "embeddings";
    add(
        format!("{e}.word_embeddings.weight"),
        &[vocab.len(), HIDDEN],
        None,
    )?;
    add(
        format!("{e}.position_embeddings.weight"),
        &[POSITIONS, HIDDEN],
        None,
    )?;
    add(
        format!("{e}.token_type_embeddings.weight"),
        &[2, HIDDEN],
        None,
    )?;
    add(format!("{e}.LayerNorm.weight"), &[HIDDEN], Some(1.0))?;
    add(format!("{e}.LayerNorm.bias"), &[HIDDEN], Some(0.0))?;
    for layer in 0..LAYERS {
        let p = format!("encoder.layer.{layer}");
        for name in ["query", "key", "value"] {
            add(
                format!("{p}.attention.self.{name}.weight"),
                &[HIDDEN, HIDDEN],
                None,
            )?;
            add(format!("{p}.attention.self.{name}.bias"), &[HIDDEN], None)?;
        }
        add(
            format!("{p}.attention.output.dense.weight"),
            &[HIDDEN, HIDDEN],
            None,
        )?;
        add(format!("{p}.attention.output.dense.bias"), &[HIDDEN], None)?;
        add(
            format!("{p}.intermediate.dense.weight"),
            &[INTERMEDIATE, HIDDEN],
            None,
        )?;
        add(
            format!("{p}.intermediate.dense.bias"),
            &[INTERMEDIATE],
            None,
        )?;
        add(
            format!("{p}.output.dense.weight"),
            &[HIDDEN, INTERMEDIATE],
            None,
        )?;
        add(format!("{p}.output.dense.bias"), &[HIDDEN], None)?;
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{p}.{norm}.weight"), &[HIDDEN], Some(1.0))?;
            add(format!("{p}.{norm}.bias"), &[HIDDEN], Some(0.0))?;
        }
    }
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &path).map_err(|e| write_error(&path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Embedder, cosine};

    #[test]
    fn the_tiny_model_loads_and_embeds_through_the_real_code() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_model(dir.path(), 1).unwrap();
        let embedder = Embedder::load(dir.path()).unwrap();
        assert_eq!(embedder.dim(), HIDDEN);
        let v = embedder
            .embed(&[
                "why is the billing service slow",
                "the billing service is slow today",
                "book a flight to lisbon",
                "",
                "zzqx unknown wörds 東京",
            ])
            .unwrap();
        for vector in &v {
            let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        }
        assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]));
        // Same weights, same vectors; other weights, another model id.
        let again = Embedder::load(dir.path()).unwrap();
        let alone = &again.embed(&["why is the billing service slow"]).unwrap()[0];
        assert!((cosine(alone, &v[0]) - 1.0).abs() < 1e-6);
        let other = tempfile::tempdir().unwrap();
        write_tiny_model(other.path(), 2).unwrap();
        assert_ne!(
            Embedder::load(other.path()).unwrap().model_id(),
            embedder.model_id()
        );
    }
}
