//! The model's weights read from its safetensors file one tensor at a time, each straight into
//! the buffer its tensor keeps. candle's buffered loader holds the whole 90 MB file beside the
//! tensors made from it; with the bf16 copies made at load, that took Valor's peak RSS past
//! 240 MB for a model that keeps under 100 MB.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use serde::Deserialize;

/// The header of a safetensors file may not be larger than this (the format's own limit).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// An open safetensors file of f32 tensors.
pub(crate) struct WeightsFile {
    path: PathBuf,
    file: Mutex<File>,
    entries: HashMap<String, Entry>,
    /// Where the tensors' bytes start.
    data_start: u64,
    /// The file's length: no tensor may claim bytes past it.
    size: u64,
    /// CRC-32 of the whole file (part of the model's id).
    pub(crate) crc: u32,
}

fn error(path: &Path, reason: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{}: {reason}", path.display()))
}

impl WeightsFile {
    pub(crate) fn open(path: &Path) -> candle_core::Result<WeightsFile> {
        let mut file = File::open(path).map_err(|e| error(path, e))?;
        let crc = crc_of(&mut file).map_err(|e| error(path, e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| error(path, e))?;
        let mut length = [0u8; 8];
        file.read_exact(&mut length).map_err(|e| error(path, e))?;
        let length = u64::from_le_bytes(length);
        let size = file.metadata().map_err(|e| error(path, e))?.len();
        if length > MAX_HEADER || length + 8 > size {
            return Err(error(path, "not a safetensors file (bad header length)"));
        }
        let mut header = vec![0u8; length as usize];
        file.read_exact(&mut header).map_err(|e| error(path, e))?;
        let mut raw: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| error(path, e))?;
        raw.remove("__metadata__");
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            let entry: Entry = serde_json::from_value(value).map_err(|e| error(path, e))?;
            entries.insert(name, entry);
        }
        Ok(WeightsFile {
            path: path.to_owned(),
            file: Mutex::new(file),
            entries,
            data_start: 8 + length,
            size,
            crc,
        })
    }

    /// Reads one tensor into a buffer of its own.
    fn read(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| error(&self.path, format!("no tensor {name}")))?;
        if entry.dtype != "F32" {
            return Err(error(
                &self.path,
                format!("{name} is {}, only F32 is read", entry.dtype),
            ));
        }
        let [begin, end] = entry.data_offsets;
        let count: usize = entry.shape.iter().product();
        // A header may claim anything: nothing is allocated for bytes the file does not have.
        let fits = self
            .data_start
            .checked_add(end)
            .is_some_and(|e| e <= self.size);
        if end < begin || !fits || (end - begin) as usize != count.saturating_mul(4) {
            return Err(error(
                &self.path,
                format!("{name}: offsets, shape and file size disagree"),
            ));
        }
        let mut values = vec![0f32; count];
        {
            let mut file = self
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            file.seek(SeekFrom::Start(self.data_start + begin))
                .map_err(|e| error(&self.path, e))?;
            let mut bytes = [0u8; 4];
            // Little-endian f32s, read through a buffer and written in place.
            let mut reader = std::io::BufReader::with_capacity(1 << 16, &mut *file);
            for value in &mut values {
                reader
                    .read_exact(&mut bytes)
                    .map_err(|e| error(&self.path, e))?;
                *value = f32::from_le_bytes(bytes);
            }
        }
        Tensor::from_vec(values, entry.shape.as_slice(), device)
    }
}

impl candle_nn::var_builder::SimpleBackend for WeightsFile {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.read(name, device)?;
        if tensor.shape() != &shape {
            return Err(error(
                &self.path,
                format!("{name} has shape {:?}, expected {shape:?}", tensor.shape()),
            ));
        }
        tensor.to_dtype(dtype)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.read(name, device)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

fn crc_of(file: &mut File) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use candle_nn::var_builder::SimpleBackend;

    #[test]
    fn tensors_come_back_as_written_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.5]], &Device::Cpu).unwrap();
        let tensors = HashMap::from([("a.weight".to_owned(), a)]);
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let file = WeightsFile::open(&path).unwrap();
        assert_eq!(file.crc, crc32fast::hash(&std::fs::read(&path).unwrap()));
        let got = file
            .get(
                Shape::from((2, 3)),
                "a.weight",
                candle_nn::Init::Const(0.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]
        );
        let wrong = file.get(
            Shape::from((3, 2)),
            "a.weight",
            candle_nn::Init::Const(0.0),
            DType::F32,
            &Device::Cpu,
        );
        assert!(wrong.unwrap_err().to_string().contains("expected"));
        assert!(!file.contains_tensor("b"));

        // A header that claims a tensor far larger than the file.
        let header =
            br#"{"big":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 16]);
        std::fs::write(&path, &bytes).unwrap();
        let file = WeightsFile::open(&path).unwrap();
        let claimed = file.get_unchecked("big", DType::F32, &Device::Cpu);
        assert!(claimed.unwrap_err().to_string().contains("file size"));

        std::fs::write(&path, [255u8; 16]).unwrap();
        let broken = WeightsFile::open(&path).err().unwrap().to_string();
        assert!(broken.contains("bad header length"), "{broken}");
    }
}
