//! Finding and loading ONNX Runtime's shared library and the model files, once per process, with
//! errors that say what is missing and how to get it. Control side only (backend creation).

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::config::InferenceConfig;
use crate::error::{Error, Result};

/// How to get the library and the models when they are missing.
const INSTALL_HINT: &str = "install them with scripts/python-env.sh (the `onnxruntime` and \
                            `pipecat-ai` wheels from PyPI), or name the files in the `inference` \
                            configuration section";

/// Where the models live inside the `pipecat-ai` wheel.
const SILERO_IN_WHEEL: &str = "pipecat/audio/vad/data/silero_vad.onnx";
const SMART_TURN_IN_WHEEL: &str = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx";
const ORT_IN_WHEEL: &str = "onnxruntime/capi";

/// The library ONNX Runtime was loaded from, once it is.
static LOADED: OnceLock<PathBuf> = OnceLock::new();
/// Serializes the first load.
static LOADING: Mutex<()> = Mutex::new(());

/// The model files a backend's sessions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// Silero VAD, when `vad.engine` is `"silero"`.
    pub silero: Option<PathBuf>,
    /// Smart Turn, when `turn.end_of_turn` is `"smart_turn"`.
    pub smart_turn: Option<PathBuf>,
}

/// Loads ONNX Runtime (once per process) and checks that the wanted model files exist.
/// `VB_ERR_INVALID_CONFIG` names the missing path and how to install it; nothing panics.
pub fn prepare(config: &InferenceConfig, silero: bool, smart_turn: bool) -> Result<ModelFiles> {
    load_library(&library_path(config)?)?;
    let model = |key: &str, configured: &Option<String>, in_wheel: &str| -> Result<PathBuf> {
        let path = match configured {
            Some(path) => PathBuf::from(path),
            None => site_packages()
                .map(|dir| dir.join(in_wheel))
                .unwrap_or_else(|| PathBuf::from(in_wheel)),
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::invalid_config(format!(
                "inference.{key}: model file {} not found; {INSTALL_HINT}",
                path.display()
            )))
        }
    };
    Ok(ModelFiles {
        silero: silero
            .then(|| model("silero_model", &config.silero_model, SILERO_IN_WHEEL))
            .transpose()?,
        smart_turn: smart_turn
            .then(|| {
                model(
                    "smart_turn_model",
                    &config.smart_turn_model,
                    SMART_TURN_IN_WHEEL,
                )
            })
            .transpose()?,
    })
}

/// `inference.ort_library`, else `$ORT_DYLIB_PATH`, else the wheel's library in the engine's
/// Python environment.
fn library_path(config: &InferenceConfig) -> Result<PathBuf> {
    if let Some(path) = &config.ort_library {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let dir = site_packages()
        .map(|d| d.join(ORT_IN_WHEEL))
        .ok_or_else(|| {
            Error::invalid_config(format!(
                "inference.ort_library: no ONNX Runtime library found (no Python environment at {}); {INSTALL_HINT}, or set ORT_DYLIB_PATH",
                venv_dir().display()
            ))
        })?;
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        // The most specific name (libonnxruntime.so.1.32.0) sorts last.
        names.sort();
        names.pop()
    });
    found.ok_or_else(|| {
        Error::invalid_config(format!(
            "inference.ort_library: no libonnxruntime.so in {}; {INSTALL_HINT}, or set ORT_DYLIB_PATH",
            dir.display()
        ))
    })
}

/// The engine's Python environment (made by scripts/python-env.sh).
fn venv_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("voicebackend/venv")
}

/// `site-packages` of the engine's Python environment, whatever its Python version.
fn site_packages() -> Option<PathBuf> {
    let lib = venv_dir().join("lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("site-packages")))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Opens the library and checks that it is ONNX Runtime before `ort` uses it (`ort` panics on a
/// library it cannot load), then hands it to `ort`. A second backend must name the same library.
fn load_library(path: &Path) -> Result<()> {
    let _loading = LOADING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(loaded) = LOADED.get() {
        if loaded == path {
            return Ok(());
        }
        return Err(Error::invalid_config(format!(
            "inference.ort_library: ONNX Runtime is already loaded from {} in this process; {} cannot be loaded beside it",
            loaded.display(),
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(Error::invalid_config(format!(
            "inference.ort_library: ONNX Runtime library {} not found; {INSTALL_HINT}, or set ORT_DYLIB_PATH",
            path.display()
        )));
    }
    check_dylib(path)?;
    let text = path.to_string_lossy().into_owned();
    let committed =
        std::panic::catch_unwind(|| ort::init_from(text).with_name("voicebackend").commit());
    match committed {
        Ok(Ok(_)) => {
            let _ = LOADED.set(path.to_owned());
            Ok(())
        }
        Ok(Err(e)) => Err(Error::invalid_config(format!(
            "inference.ort_library: ONNX Runtime at {} failed to start: {e}",
            path.display()
        ))),
        Err(_) => Err(Error::invalid_config(format!(
            "inference.ort_library: ONNX Runtime at {} could not be loaded (a version this engine cannot use?)",
            path.display()
        ))),
    }
}

/// dlopen + the `OrtGetApiBase` symbol: a clear error for a file that is no ONNX Runtime.
fn check_dylib(path: &Path) -> Result<()> {
    let c_path = CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| Error::invalid_config("inference.ort_library: the path holds a NUL byte"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string; dlopen has no other precondition. The
    // handle is kept open for the life of the process (`ort` opens the same file again and
    // shares it), so it is never closed.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns null or a valid C string owned by libc, read at once.
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_owned()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(Error::invalid_config(format!(
            "inference.ort_library: {} cannot be loaded: {why}; {INSTALL_HINT}",
            path.display()
        )));
    }
    // SAFETY: `handle` is a live handle from dlopen and the symbol name is NUL-terminated.
    let symbol = unsafe { libc::dlsym(handle, c"OrtGetApiBase".as_ptr()) };
    if symbol.is_null() {
        return Err(Error::invalid_config(format!(
            "inference.ort_library: {} is not ONNX Runtime (no OrtGetApiBase); {INSTALL_HINT}",
            path.display()
        )));
    }
    Ok(())
}

/// Opens an ONNX model for one thread (the pool's threads are the parallelism): graph
/// optimizations on, one intra- and one inter-op thread. `key` names the setting in errors
/// (`inference.silero_model`).
pub fn open_session(path: &Path, key: &str) -> Result<ort::session::Session> {
    use ort::session::builder::GraphOptimizationLevel;
    ort::session::Session::builder()
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
        .and_then(|b| b.with_intra_threads(1))
        .and_then(|b| b.with_inter_threads(1))
        .and_then(|b| b.commit_from_file(path))
        .map_err(|e| {
            Error::invalid_config(format!("{key}: {} cannot be loaded: {e}", path.display()))
        })
}
