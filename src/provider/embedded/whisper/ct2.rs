//! A reader for CTranslate2's `model.bin` file format (binary version ≤ 6).
//!
//! Layout, all little-endian: `u32` binary version; string spec name (version ≥ 2); `u32` spec
//! revision (version ≥ 2); `u32` variable count; per variable: string name, `u8` rank, rank ×
//! `u32` dims, `u8` dtype id (version ≥ 4; before that a string type name), `u32` byte count, the
//! raw bytes; then (version ≥ 3) `u32` alias count and (alias, target) string pairs. A string is a
//! `u16` length that counts a trailing NUL, the bytes, then the NUL.
//!
//! Only what Whisper needs is interpreted: float variables convert to `f32`, integer scalars
//! read as `i64`. Quantized weights (int8 with scales) are reported as such and not dequantized.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Element type of a variable, by CTranslate2's dtype id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// id 0.
    F32,
    /// id 1.
    I8,
    /// id 2.
    I16,
    /// id 3.
    I32,
    /// id 4.
    F16,
    /// id 5.
    BF16,
}

impl DType {
    /// The dtype of CTranslate2's numeric id.
    pub fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    /// The dtype of the type name that binary versions below 4 store.
    fn from_name(name: &str) -> Option<DType> {
        Some(match name {
            "float" | "float32" => DType::F32,
            "int8" => DType::I8,
            "int16" => DType::I16,
            "int32" => DType::I32,
            "float16" => DType::F16,
            "bfloat16" => DType::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One named array of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Dimensions, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Raw little-endian bytes, `shape.product() × dtype.size()` of them.
    pub data: Vec<u8>,
}

impl Variable {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the variable holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32`; `None` for an integer variable.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let pairs = || {
            self.data
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        Some(match self.dtype {
            DType::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => pairs().map(|h| half::f16::from_bits(h).to_f32()).collect(),
            DType::BF16 => pairs().map(|h| half::bf16::from_bits(h).to_f32()).collect(),
            DType::I8 | DType::I16 | DType::I32 => return None,
        })
    }

    /// The value of an integer scalar (or the first element of an integer array).
    pub fn to_i64(&self) -> Option<i64> {
        let d = &self.data;
        match self.dtype {
            DType::I8 => d.first().map(|&b| i64::from(b as i8)),
            DType::I16 => d
                .get(..2)
                .map(|b| i64::from(i16::from_le_bytes([b[0], b[1]]))),
            DType::I32 => d
                .get(..4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            DType::F32 | DType::F16 | DType::BF16 => None,
        }
    }
}

/// A parsed `model.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ct2Model {
    /// Binary format version.
    pub version: u32,
    /// Spec class name, e.g. `WhisperSpec` (empty for binary version 1).
    pub spec: String,
    /// Spec revision (1 for binary version 1).
    pub revision: u32,
    /// Variables by name, e.g. `encoder/conv1/weight`.
    pub variables: HashMap<String, Variable>,
    /// Alias → target variable name, e.g. `decoder/projection/weight` → `decoder/embeddings/weight`.
    pub aliases: HashMap<String, String>,
}

/// Why a `model.bin` could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct2Error(pub String);

impl fmt::Display for Ct2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Ct2Error {}

/// The newest binary version this reader understands.
pub const MAX_VERSION: u32 = 6;

impl Ct2Model {
    /// Reads and parses the file at `path`.
    pub fn open(path: &Path) -> Result<Ct2Model, Ct2Error> {
        let bytes = std::fs::read(path).map_err(|e| Ct2Error(format!("cannot read: {e}")))?;
        Ct2Model::parse(&bytes)
    }

    /// Parses a whole `model.bin` held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Ct2Model, Ct2Error> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u32("binary version")?;
        if version == 0 || version > MAX_VERSION {
            return Err(Ct2Error(format!(
                "unsupported CTranslate2 binary version {version} (this reader knows 1 to {MAX_VERSION})"
            )));
        }
        let (spec, revision) = if version >= 2 {
            (r.string("spec name")?, r.u32("spec revision")?)
        } else {
            (String::new(), 1)
        };
        let count = r.u32("variable count")?;
        let mut variables = HashMap::new();
        for index in 0..count {
            let name = r.string("variable name")?;
            let what = |field: &str| format!("{field} of variable {index} ({name})");
            let rank = r.u8(&what("rank"))?;
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(r.u32(&what("dimension"))? as usize);
            }
            let dtype = if version >= 4 {
                let id = r.u8(&what("dtype"))?;
                DType::from_id(id)
                    .ok_or_else(|| Ct2Error(format!("unknown dtype id {id} of variable {name}")))?
            } else {
                let type_name = r.string(&what("type name"))?;
                DType::from_name(&type_name).ok_or_else(|| {
                    Ct2Error(format!("unknown type '{type_name}' of variable {name}"))
                })?
            };
            let byte_count = r.u32(&what("byte count"))? as usize;
            let elements = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Ct2Error(format!("variable {name}: shape {shape:?} overflows")))?;
            if elements.checked_mul(dtype.size()) != Some(byte_count) {
                return Err(Ct2Error(format!(
                    "variable {name}: {byte_count} bytes do not hold shape {shape:?} of {dtype:?}"
                )));
            }
            let data = r.take(byte_count, &what("data"))?.to_vec();
            variables.insert(name, Variable { shape, dtype, data });
        }
        let mut aliases = HashMap::new();
        if version >= 3 {
            let alias_count = r.u32("alias count")?;
            for _ in 0..alias_count {
                let alias = r.string("alias name")?;
                let target = r.string("alias target")?;
                aliases.insert(alias, target);
            }
        }
        if r.pos != bytes.len() {
            return Err(Ct2Error(format!(
                "{} unexpected bytes after the last record",
                bytes.len() - r.pos
            )));
        }
        Ok(Ct2Model {
            version,
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// The variable `name`, following one alias if `name` is one.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.variables.get(name).or_else(|| {
            self.aliases
                .get(name)
                .and_then(|target| self.variables.get(target))
        })
    }
}

/// A cursor over the file's bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Ct2Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Ct2Error(format!(
                "file truncated: {what} at byte {} needs {n} bytes, {} left",
                self.pos,
                self.bytes.len() - self.pos
            )));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, Ct2Error> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, Ct2Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, Ct2Error> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String, Ct2Error> {
        let len = usize::from(self.u16(what)?);
        let at = self.pos;
        let raw = self.take(len, what)?;
        let text = match raw.split_last() {
            Some((0, text)) => text,
            _ => {
                return Err(Ct2Error(format!(
                    "{what} at byte {at} is not NUL-terminated"
                )));
            }
        };
        String::from_utf8(text.to_vec())
            .map_err(|_| Ct2Error(format!("{what} at byte {at} is not UTF-8")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes CTranslate2 `model.bin` files (binary version 6) for tests.
    #[derive(Default)]
    pub(crate) struct Writer {
        vars: Vec<(String, Vec<usize>, u8, Vec<u8>)>,
        aliases: Vec<(String, String)>,
    }

    fn put_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    impl Writer {
        pub(crate) fn f16(&mut self, name: &str, shape: &[usize], values: &[f32]) -> &mut Self {
            let data = values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
                .collect();
            self.vars.push((name.into(), shape.to_vec(), 4, data));
            self
        }

        pub(crate) fn f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> &mut Self {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.vars.push((name.into(), shape.to_vec(), 0, data));
            self
        }

        pub(crate) fn i16_scalar(&mut self, name: &str, value: i16) -> &mut Self {
            self.vars
                .push((name.into(), vec![], 2, value.to_le_bytes().to_vec()));
            self
        }

        pub(crate) fn i8_scalar(&mut self, name: &str, value: i8) -> &mut Self {
            self.vars
                .push((name.into(), vec![], 1, value.to_le_bytes().to_vec()));
            self
        }

        pub(crate) fn alias(&mut self, alias: &str, target: &str) -> &mut Self {
            self.aliases.push((alias.into(), target.into()));
            self
        }

        pub(crate) fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&6u32.to_le_bytes());
            put_string(&mut out, "WhisperSpec");
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
            for (name, shape, dtype, data) in &self.vars {
                put_string(&mut out, name);
                out.push(shape.len() as u8);
                for &d in shape {
                    out.extend_from_slice(&(d as u32).to_le_bytes());
                }
                out.push(*dtype);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
            out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (alias, target) in &self.aliases {
                put_string(&mut out, alias);
                put_string(&mut out, target);
            }
            out
        }
    }

    fn sample() -> Vec<u8> {
        Writer::default()
            .f16(
                "decoder/embeddings/weight",
                &[2, 3],
                &[0.0, 1.0, -2.5, 0.125, 65504.0, -0.0],
            )
            .f32("encoder/conv1/bias", &[2], &[1.5, -3.25])
            .i16_scalar("decoder/num_heads", 6)
            .i8_scalar("decoder/pre_norm", 1)
            .alias("decoder/projection/weight", "decoder/embeddings/weight")
            .bytes()
    }

    #[test]
    fn reads_a_written_file() {
        let dir = std::env::temp_dir().join(format!("vb-ct2-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.bin");
        std::fs::write(&path, sample()).unwrap();
        let model = Ct2Model::open(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(model.version, 6);
        assert_eq!(model.spec, "WhisperSpec");
        assert_eq!(model.revision, 3);
        assert_eq!(model.variables.len(), 4);
        let emb = &model.variables["decoder/embeddings/weight"];
        assert_eq!(emb.shape, vec![2, 3]);
        assert_eq!(emb.dtype, DType::F16);
        assert_eq!(emb.len(), 6);
        assert_eq!(
            emb.to_f32().unwrap(),
            vec![0.0, 1.0, -2.5, 0.125, 65504.0, -0.0]
        );
        let bias = &model.variables["encoder/conv1/bias"];
        assert_eq!(bias.to_f32().unwrap(), vec![1.5, -3.25]);
        assert_eq!(model.variables["decoder/num_heads"].to_i64(), Some(6));
        assert_eq!(
            model.variables["decoder/num_heads"].shape,
            Vec::<usize>::new()
        );
        assert_eq!(model.variables["decoder/pre_norm"].to_i64(), Some(1));
        assert_eq!(model.variables["decoder/num_heads"].to_f32(), None);
        assert_eq!(model.get("decoder/projection/weight"), Some(emb));
        assert_eq!(model.get("decoder/nothing"), None);
    }

    #[test]
    fn rejects_truncated_and_corrupt_files() {
        let bytes = sample();
        for cut in [0, 3, 10, 40, bytes.len() - 1] {
            let err = Ct2Model::parse(&bytes[..cut]).unwrap_err();
            assert!(err.0.contains("truncated"), "cut {cut}: {err}");
        }
        let mut trailing = bytes.clone();
        trailing.push(7);
        assert!(
            Ct2Model::parse(&trailing)
                .unwrap_err()
                .0
                .contains("unexpected bytes")
        );

        let mut version = bytes.clone();
        version[..4].copy_from_slice(&99u32.to_le_bytes());
        assert!(
            Ct2Model::parse(&version)
                .unwrap_err()
                .0
                .contains("version 99")
        );

        // A byte count that disagrees with the shape.
        let mut bad = Writer::default();
        bad.vars.push(("x".into(), vec![3], 4, vec![0; 4]));
        assert!(
            Ct2Model::parse(&bad.bytes())
                .unwrap_err()
                .0
                .contains("do not hold")
        );

        // An unknown dtype id.
        let mut bad = Writer::default();
        bad.vars.push(("x".into(), vec![1], 9, vec![0; 4]));
        assert!(
            Ct2Model::parse(&bad.bytes())
                .unwrap_err()
                .0
                .contains("dtype id 9")
        );

        assert!(Ct2Model::parse(b"garbage that is not a model").is_err());
    }
}
