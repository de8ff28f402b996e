//! A lean BERT encoder on candle tensors, enough for sentence embeddings.
//!
//! Why not `candle-transformers`' BERT: that crate compiles every model it has (about 200 s of a
//! 2-core build), and this one does less work per layer: the query, key and value projections
//! are one matrix product, weights are stored transposed once at load so every product reads
//! them in order, the attention scale is folded into the query weights, and attention and the
//! GELU run as fused kernels ([`crate::kernels`]).

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::bf16::PackedWeight;
use crate::kernels::{Attention, BiasGelu};
use crate::matmul::{linear, linear_bf16};

/// The fields of a Hugging Face BERT `config.json` this encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_act() -> String {
    "gelu".to_owned()
}

fn default_eps() -> f64 {
    1e-12
}

type Result<T> = candle_core::Result<T>;

/// A linear layer with its weight stored as `[in, out]`, and packed for the bf16 kernel when
/// the model runs in bf16.
struct Dense {
    weight: Tensor,
    bias: Vec<f32>,
    packed: Option<PackedWeight>,
}

impl Dense {
    fn load(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Dense> {
        let weight = vb.get((outputs, inputs), "weight")?.t()?.contiguous()?;
        let bias = vb.get(outputs, "bias")?.to_vec1()?;
        Ok(Dense {
            weight,
            bias,
            packed: None,
        })
    }

    /// Packs the weight (and bias) for the bf16 kernel; `gelu` applies GELU to the outputs.
    fn pack(&mut self, gelu: bool) -> Result<()> {
        let (inputs, outputs) = self.weight.dims2()?;
        let weight = self.weight.flatten_all()?.to_vec1::<f32>()?;
        let packed = PackedWeight::pack(&weight, inputs, outputs, Some(&self.bias));
        self.packed = Some(if gelu { packed.with_gelu() } else { packed });
        // The fp32 copy is no longer read: ~85 MB of the model's memory freed.
        self.weight = Tensor::zeros((0, 0), candle_core::DType::F32, self.weight.device())?;
        Ok(())
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.packed {
            Some(packed) => linear_bf16(x, packed),
            None => linear(x, &self.weight, Some(&self.bias)),
        }
    }

    /// `gelu(x · W + bias)`: fused into the bf16 product, else the product then the fused
    /// bias-and-GELU kernel.
    fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match &self.packed {
            Some(packed) => linear_bf16(x, packed),
            None => linear(x, &self.weight, None)?.apply_op1_no_bwd(&BiasGelu { bias: &self.bias }),
        }
    }
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Norm> {
        Ok(Norm {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

struct Layer {
    /// Query (pre-scaled), key and value projections side by side: `[hidden, 3 * hidden]`.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    /// The intermediate projection; its bias is applied with the GELU.
    up: Dense,
    down: Dense,
    output_norm: Norm,
}

impl Layer {
    fn load(vb: &VarBuilder, config: &BertConfig, head_dim: usize) -> Result<Layer> {
        let hidden = config.hidden_size;
        let attention = vb.pp("attention");
        let projection = |name: &str| Dense::load(&attention.pp("self").pp(name), hidden, hidden);
        let (query, key, value) = (
            projection("query")?,
            projection("key")?,
            projection("value")?,
        );
        let scale = 1.0 / (head_dim as f64).sqrt();
        let qkv = Dense {
            weight: Tensor::cat(&[&(query.weight * scale)?, &key.weight, &value.weight], 1)?,
            bias: (query.bias.iter().map(|b| b * scale as f32))
                .chain(key.bias)
                .chain(value.bias)
                .collect(),
            packed: None,
        };
        let eps = config.layer_norm_eps;
        let up = Dense::load(
            &vb.pp("intermediate").pp("dense"),
            hidden,
            config.intermediate_size,
        )?;
        Ok(Layer {
            qkv,
            attention_out: Dense::load(&attention.pp("output").pp("dense"), hidden, hidden)?,
            attention_norm: Norm::load(&attention.pp("output").pp("LayerNorm"), hidden, eps)?,
            up,
            down: Dense::load(
                &vb.pp("output").pp("dense"),
                config.intermediate_size,
                hidden,
            )?,
            output_norm: Norm::load(&vb.pp("output").pp("LayerNorm"), hidden, eps)?,
        })
    }

    /// `x` is `[batch * tokens, hidden]`; row `b` has `lengths[b]` real tokens.
    fn forward(&self, x: &Tensor, lengths: &[usize], shape: Shape) -> Result<Tensor> {
        let attention = Attention {
            lengths,
            tokens: shape.tokens,
            heads: shape.heads,
            head_dim: shape.head_dim,
        };
        let context = self.qkv.forward(x)?.apply_op1_no_bwd(&attention)?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let hidden = self.up.forward_gelu(&attended)?;
        self.output_norm
            .forward(&(self.down.forward(&hidden)? + attended)?)
    }
}

#[derive(Clone, Copy)]
struct Shape {
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

/// The encoder: token ids in, one hidden state per token out.
pub struct Bert {
    words: Tensor,
    positions: Tensor,
    token_type: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
}

impl Bert {
    /// Packs every matrix product's weight for the bf16 kernel (call once, after `load`).
    /// Loads the model; with `bf16` each layer is packed for the bf16 kernel as soon as it is
    /// read, so its fp32 copy is gone before the next is read (a lower peak at load).
    pub fn load(vb: &VarBuilder, config: &BertConfig, bf16: bool) -> Result<Bert> {
        if !config.hidden_act.starts_with("gelu") {
            candle_core::bail!(
                "hidden_act {:?} is not supported (only gelu)",
                config.hidden_act
            );
        }
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {hidden} is not a multiple of {heads} heads");
        }
        let head_dim = hidden / heads;
        let embeddings = vb.pp("embeddings");
        let token_types = embeddings.get(
            (config.type_vocab_size, hidden),
            "token_type_embeddings.weight",
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let mut layer =
                    Layer::load(&vb.pp(format!("encoder.layer.{i}")), config, head_dim)?;
                if bf16 {
                    layer.qkv.pack(false)?;
                    layer.attention_out.pack(false)?;
                    layer.up.pack(true)?;
                    layer.down.pack(false)?;
                }
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            // With bf16 products the word table (30k x 384, the largest tensor) is kept in f16:
            // 23 MB less, and rows are widened as they are looked up.
            words: {
                let words =
                    embeddings.get((config.vocab_size, hidden), "word_embeddings.weight")?;
                if bf16 {
                    words.to_dtype(candle_core::DType::F16)?
                } else {
                    words
                }
            },
            positions: embeddings.get(
                (config.max_position_embeddings, hidden),
                "position_embeddings.weight",
            )?,
            // Single sentences only: every token has type 0.
            token_type: token_types.get(0)?,
            embedding_norm: Norm::load(&embeddings.pp("LayerNorm"), hidden, config.layer_norm_eps)?,
            layers,
            heads,
            head_dim,
        })
    }

    /// `ids` is `[batch, tokens]` (u32), each row `lengths[b]` real tokens then padding;
    /// returns `[batch, tokens, hidden]` (padding rows are not meaningful).
    pub fn forward(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (batch, tokens) = ids.dims2()?;
        if lengths.len() != batch || lengths.iter().any(|&l| l > tokens) {
            candle_core::bail!("lengths {lengths:?} do not fit a batch of {batch} x {tokens}");
        }
        let hidden = self.heads * self.head_dim;
        let words = self
            .words
            .index_select(&ids.flatten_all()?, 0)?
            .to_dtype(candle_core::DType::F32)?
            .reshape((batch, tokens, hidden))?;
        let x = words
            .broadcast_add(&self.positions.narrow(0, 0, tokens)?)?
            .broadcast_add(&self.token_type)?
            .reshape((batch * tokens, hidden))?;
        let mut x = self.embedding_norm.forward(&x)?;
        let shape = Shape {
            tokens,
            heads: self.heads,
            head_dim: self.head_dim,
        };
        for layer in &self.layers {
            x = layer.forward(&x, lengths, shape)?;
        }
        x.reshape((batch, tokens, hidden))
    }
}

/// Mean of each row's first `lengths[row]` token states (its real tokens), L2-normalised.
pub fn mean_pool_normalised(states: &Tensor, lengths: &[usize]) -> Result<Vec<Vec<f32>>> {
    let states = states.to_device(&Device::Cpu)?.to_vec3::<f32>()?;
    Ok(states
        .into_iter()
        .zip(lengths)
        .map(|(rows, &length)| {
            let hidden = rows.first().map_or(0, Vec::len);
            let mut sum = vec![0f32; hidden];
            for row in rows.iter().take(length) {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            let count = (length as f32).max(1.0);
            sum.iter_mut().for_each(|s| *s /= count);
            let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            sum.iter_mut().for_each(|s| *s /= norm);
            sum
        })
        .collect())
}
