//! A thread-safe map from lower-case names to factories: the shape shared by the backend registry
//! and the STT/TTS/S2S provider registries.

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::error::{Error, Result};

/// Factories by name. Reads take a shared lock; only registration writes.
pub struct NameMap<T: Clone> {
    kind: &'static str,
    entries: RwLock<BTreeMap<String, T>>,
}

impl<T: Clone> NameMap<T> {
    /// An empty map for providers of `kind` ("backend", "stt", …), used in error messages.
    pub const fn new(kind: &'static str) -> Self {
        NameMap {
            kind,
            entries: RwLock::new(BTreeMap::new()),
        }
    }

    /// Registers `value` under `name`, replacing an earlier entry. Names are lower-case ASCII
    /// letters, digits, `-` and `_`.
    pub fn register(&self, name: &str, value: T) -> Result<()> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::invalid_argument(format!(
                "{} provider name '{name}' must be lower-case letters, digits, '-' or '_'",
                self.kind
            )));
        }
        self.write().insert(name.to_owned(), value);
        Ok(())
    }

    /// The entry named `name`, or `VB_ERR_PROVIDER_NOT_FOUND` listing the known names.
    pub fn get(&self, name: &str) -> Result<T> {
        let entries = self.read();
        entries.get(name).cloned().ok_or_else(|| {
            let known: Vec<String> = entries.keys().cloned().collect();
            Error::provider_not_found(self.kind, name, &known)
        })
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, T>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, T>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VbStatus;

    #[test]
    fn unknown_names_list_the_known_ones() {
        let map = NameMap::new("stt");
        map.register("whisper", 1).unwrap();
        map.register("deepgram", 2).unwrap();
        assert_eq!(map.get("whisper").unwrap(), 1);
        let e = map.get("nope").unwrap_err();
        assert_eq!(e.status(), VbStatus::VB_ERR_PROVIDER_NOT_FOUND);
        assert_eq!(
            e.message(),
            "no stt provider named 'nope' is registered (registered: deepgram, whisper)"
        );
        assert_eq!(
            map.register("Bad Name", 3).unwrap_err().status(),
            VbStatus::VB_ERR_INVALID_ARGUMENT
        );
    }
}
