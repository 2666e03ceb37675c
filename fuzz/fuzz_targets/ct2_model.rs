//! A CTranslate2 `model.bin` (the embedded Whisper's weights file).
//!
//! Checks: no panic and no allocation beyond the file's size; every variable of a file that
//! parses holds exactly its shape's bytes; float variables convert to one `f32` per element;
//! aliases resolve to their targets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicebackend::provider::embedded::whisper::ct2::{Ct2Model, DType};

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Ct2Model::parse(data) else {
        return;
    };
    assert!((1..=6).contains(&model.version));
    for (name, variable) in &model.variables {
        assert_eq!(
            variable.data.len(),
            variable.len() * variable.dtype.size(),
            "{name}"
        );
        match variable.dtype {
            DType::F32 | DType::F16 | DType::BF16 => {
                assert_eq!(variable.to_f32().expect("a float").len(), variable.len());
                assert_eq!(variable.to_i64(), None);
            }
            DType::I8 | DType::I16 | DType::I32 => {
                assert_eq!(variable.to_f32(), None);
                assert_eq!(variable.to_i64().is_some(), !variable.is_empty());
            }
        }
        assert_eq!(model.get(name), Some(variable));
    }
    for (alias, target) in &model.aliases {
        if !model.variables.contains_key(alias) {
            assert_eq!(model.get(alias), model.variables.get(target));
        }
    }
});
