//! Sentence vectors in one byte a dimension: the form the vector index keeps them in.
//!
//! The index is the one part of Valor's memory that grows with every message it stores; an
//! f32 vector of all-MiniLM-L6-v2 is 1.5 KB, this form 388 bytes. Each vector carries its own
//! scale (its largest component maps to ±127) in its last four bytes, so similarities stay
//! within about 0.01 of the f32 ones and the order of near neighbours barely changes. It lives
//! in this crate because the crate is optimised even in debug builds: the distance is the
//! index's inner loop.

/// Bytes after the components: the vector's scale, an f32 in little-endian order.
pub const SCALE_BYTES: usize = 4;

/// `vector` as bytes: components divided by its scale and rounded, then the scale.
pub fn quantize(vector: &[f32]) -> Vec<i8> {
    let largest = vector.iter().fold(0f32, |max, x| max.max(x.abs()));
    let scale = if largest > 0.0 && largest.is_finite() {
        largest / 127.0
    } else {
        1.0
    };
    let mut out = Vec::with_capacity(vector.len() + SCALE_BYTES);
    out.extend(
        vector
            .iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8),
    );
    out.extend(scale.to_le_bytes().map(|b| b as i8));
    out
}

/// The components and the scale of a quantized vector.
fn parts(vector: &[i8]) -> (&[i8], f32) {
    let (values, tail) = vector.split_at(vector.len().saturating_sub(SCALE_BYTES));
    let mut bytes = [0u8; SCALE_BYTES];
    bytes
        .iter_mut()
        .zip(tail)
        .for_each(|(byte, t)| *byte = *t as u8);
    (values, f32::from_le_bytes(bytes))
}

/// The dot product of two quantized vectors (their cosine similarity when they were unit
/// vectors).
pub fn dot(a: &[i8], b: &[i8]) -> f32 {
    let (values_a, scale_a) = parts(a);
    let (values_b, scale_b) = parts(b);
    // In chunks of 64 so the sum of products stays in i32 lanes the compiler vectorises.
    let sum: i32 = values_a
        .chunks(64)
        .zip(values_b.chunks(64))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| i32::from(*p) * i32::from(*q))
                .sum::<i32>()
        })
        .sum();
    sum as f32 * scale_a * scale_b
}

/// The vector back in f32 (for checks and exports).
pub fn dequantize(vector: &[i8]) -> Vec<f32> {
    let (values, scale) = parts(vector);
    values.iter().map(|v| f32::from(*v) * scale).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u32, dim: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    #[test]
    fn similarities_stay_close_to_the_f32_ones() {
        let vectors: Vec<Vec<f32>> = (1..40).map(|s| unit(s, 384)).collect();
        let quantized: Vec<Vec<i8>> = vectors.iter().map(|v| quantize(v)).collect();
        for (a, qa) in vectors.iter().zip(&quantized) {
            assert_eq!(qa.len(), 384 + SCALE_BYTES);
            assert!((dot(qa, qa) - 1.0).abs() < 0.01, "{}", dot(qa, qa));
            for (b, qb) in vectors.iter().zip(&quantized) {
                let exact: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                assert!(
                    (dot(qa, qb) - exact).abs() < 0.01,
                    "{exact} vs {}",
                    dot(qa, qb)
                );
            }
        }
        let back = dequantize(&quantized[0]);
        let error = back
            .iter()
            .zip(&vectors[0])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(error < 0.01, "{error}");
    }

    #[test]
    fn zero_and_broken_vectors_give_no_nan() {
        let zero = quantize(&[0.0; 8]);
        assert_eq!(dot(&zero, &zero), 0.0);
        let broken = quantize(&[f32::NAN, 1.0, f32::INFINITY]);
        assert!(dot(&broken, &broken).is_finite());
        assert_eq!(dot(&[], &[]), 0.0);
    }
}
