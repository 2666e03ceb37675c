//! The backend registry: backend kinds by name (`local`, `pipecat`, …). A kind checks its
//! configuration and decides what each session runs; the kinds themselves are built by the
//! pipeline layer ([`crate::pipeline::kinds`]).

use std::sync::{Arc, OnceLock};

use crate::pipeline::kinds::{self, BackendKind};
use crate::registry::NameMap;

/// The process-wide backend registry, holding the built-in kinds.
pub fn backend_registry() -> &'static NameMap<Arc<dyn BackendKind>> {
    static GLOBAL: OnceLock<NameMap<Arc<dyn BackendKind>>> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let map: NameMap<Arc<dyn BackendKind>> = NameMap::new("backend");
        for kind in kinds::builtin() {
            let name = kind.name().to_owned();
            map.register(&name, kind).expect("valid name");
        }
        map
    })
}
