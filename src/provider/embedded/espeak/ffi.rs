//! Hand-written bindings to the part of eSpeak NG's `speak_lib.h` (API revision 12) this crate
//! uses. Linked against the system's `libespeak-ng` (Debian: `libespeak-ng-dev`).
//!
//! Every function here touches eSpeak NG's process-global state and is not thread-safe: only the
//! synthesis thread in the parent module calls them.
//!
//! Constants are private to the crate on purpose: cbindgen exports every `pub const` of the crate
//! into the C header.

use std::ffi::{c_char, c_int, c_short, c_uchar, c_uint, c_void};

/// `espeak_AUDIO_OUTPUT::AUDIO_OUTPUT_SYNCHRONOUS`: audio goes to the synth callback, and
/// `espeak_Synth` returns only once synthesis has finished (or was aborted by the callback).
pub(crate) const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// `espeakINITIALIZE_DONT_EXIT`: report a missing `espeak-ng-data` instead of calling `exit()`.
pub(crate) const INITIALIZE_DONT_EXIT: c_int = 0x8000;
/// `espeak_POSITION_TYPE::POS_CHARACTER`.
pub(crate) const POS_CHARACTER: c_int = 1;
/// `espeakCHARS_UTF8`: the text is UTF-8.
pub(crate) const CHARS_UTF8: c_uint = 1;
/// `espeakENDPAUSE`: end the text with a sentence pause.
pub(crate) const ENDPAUSE: c_uint = 0x1000;
/// `espeak_PARAMETER::espeakRATE`: words per minute, 80–450.
pub(crate) const PARAM_RATE: c_int = 1;
/// `espeak_PARAMETER::espeakPITCH`: base pitch, 0–100, 50 normal.
pub(crate) const PARAM_PITCH: c_int = 3;
/// `espeak_ERROR::EE_OK`.
pub(crate) const EE_OK: c_int = 0;

/// `espeak_EVENT`. Only ever handled through a pointer, so its fields are not spelled out.
#[repr(C)]
pub(crate) struct EspeakEvent {
    _opaque: [u8; 0],
}

/// `espeak_VOICE`: one entry of `espeak_ListVoices`, or a selector passed to it.
#[repr(C)]
pub(crate) struct EspeakVoice {
    /// Given name, UTF-8, e.g. `English (America)`.
    pub(crate) name: *const c_char,
    /// Languages: repeated (priority byte, NUL-terminated name), ended by an empty name. As a
    /// selector: one plain NUL-terminated language name (or `variant` to list the variants).
    pub(crate) languages: *const c_char,
    /// File name within `espeak-ng-data/voices`, e.g. `gmw/en-US`.
    pub(crate) identifier: *const c_char,
    /// 0 none, 1 male, 2 female.
    pub(crate) gender: c_uchar,
    /// Age in years, 0 when not given.
    pub(crate) age: c_uchar,
    /// Selector only: which of the matching voices to pick.
    pub(crate) variant: c_uchar,
    /// Internal.
    pub(crate) xx1: c_uchar,
    /// Internal.
    pub(crate) score: c_int,
    /// Internal.
    pub(crate) spare: *mut c_void,
}

/// `t_espeak_callback`: receives `numsamples` samples at `wav` (NULL once synthesis has ended)
/// and a list of events; returns 0 to continue, 1 to abort synthesis.
pub(crate) type SynthCallback =
    unsafe extern "C" fn(wav: *mut c_short, numsamples: c_int, events: *mut EspeakEvent) -> c_int;

#[link(name = "espeak-ng")]
unsafe extern "C" {
    /// Loads the phoneme data and sets the output mode. Returns the sample rate in Hz, or -1.
    pub(crate) fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;

    /// Sets the function that receives the audio.
    pub(crate) fn espeak_SetSynthCallback(callback: Option<SynthCallback>);

    /// Speaks `text`; in synchronous mode it returns when synthesis is done.
    pub(crate) fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;

    /// Sets a speech parameter (`relative` 0: absolute value).
    pub(crate) fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;

    /// Selects a voice by file name or given name, optionally with `+variant`.
    pub(crate) fn espeak_SetVoiceByName(name: *const c_char) -> c_int;

    /// The voices matching `voice_spec` (all but the variants when NULL): a NULL-terminated
    /// array owned by eSpeak NG, valid until the next call.
    pub(crate) fn espeak_ListVoices(voice_spec: *mut EspeakVoice) -> *mut *const EspeakVoice;
}
