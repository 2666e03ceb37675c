//! C ABI of a session's Opus calls, for hosts that carry the audio over their own transport as
//! Opus (session keys `input_codec` / `output_codec` `"opus"`).
//!
//! Threads: as the PCM calls they replace. One thread at a time calls
//! `vb_session_process_opus` (the input's single producer, shared with
//! `vb_session_process_audio`), one `vb_session_read_opus` (the output's single consumer). Both
//! are realtime-safe: no allocation, no lock, no blocking — also when they refuse a packet or a
//! buffer.

use super::session::VbSession;
use super::{RealtimeOutcome, guard_realtime, required_ref};
use crate::error::{Error, VbStatus};
use crate::transport::host_opus::OpusRefusal;
use crate::transport::media::opus::MAX_PACKET;

/// Bytes that always hold one packet of `vb_session_read_opus`.
pub const VB_OPUS_MAX_PACKET: usize = 1500;

// The encoder writes into a buffer of this size (a literal above, for the header).
const _: () = assert!(VB_OPUS_MAX_PACKET == MAX_PACKET);

/// The status and static message of a refusal.
fn refused(refusal: OpusRefusal) -> RealtimeOutcome {
    let (status, message) = match refusal {
        OpusRefusal::Undecodable(_) => (
            VbStatus::VB_ERR_INVALID_ARGUMENT,
            c"packet: not an Opus packet libopus can decode; nothing was queued",
        ),
        OpusRefusal::BufferTooSmall => (
            VbStatus::VB_ERR_INVALID_ARGUMENT,
            c"buf: too small for the next Opus packet, which is kept for the next call (VB_OPUS_MAX_PACKET bytes always suffice)",
        ),
        OpusRefusal::EncoderFailed(_) => (
            VbStatus::VB_ERR_INTERNAL,
            c"opus: the encoder failed; one frame of the agent's audio was lost",
        ),
    };
    RealtimeOutcome::Refused(status, message)
}

/// Decodes one Opus packet (any duration Opus allows; 10–60 ms in practice) of mono user audio
/// at `input_sample_rate` and copies it into the session, as `vb_session_process_audio` does with
/// PCM. The session needs `input_codec` `"opus"` (else `VB_ERR_INVALID_STATE`).
///
/// `len` 0 signals a lost packet (`packet` may then be NULL): its audio is concealed from what
/// came before (PLC), as long as the last packet (20 ms before any came). In-band FEC is not used
/// (it needs the packet after the lost one, which the engine does not wait for). A packet that
/// does not decode is `VB_ERR_INVALID_ARGUMENT` and nothing is queued. `VB_ERR_BUFFER_FULL` when
/// the input ring took only part of the packet's audio; the loss is counted in `frames_dropped`
/// and reported as `VB_EVENT_AUDIO_DROPPED`. Decoded and lost packets count in health's media
/// counters. Realtime-safe: never blocks, allocates or locks. `packet` is borrowed for the call.
///
/// # Safety
/// `session` is NULL or a live session; `packet` is NULL or valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_process_opus(
    session: *mut VbSession,
    packet: *const u8,
    len: usize,
) -> VbStatus {
    guard_realtime(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        let packet = match (packet.is_null(), len) {
            (_, 0) => None,
            (true, _) => {
                return Err(Error::invalid_argument(
                    "packet is NULL but len is not 0 (a lost packet is NULL, 0)",
                ));
            }
            // SAFETY: non-NULL and valid for `len` bytes per the contract.
            (false, n) => Some(unsafe { std::slice::from_raw_parts(packet, n) }),
        };
        Ok(match session.session.process_opus(packet)? {
            Ok(push) if push.dropped > 0 => RealtimeOutcome::Refused(
                VbStatus::VB_ERR_BUFFER_FULL,
                c"input ring full: part of the packet's audio was dropped",
            ),
            Ok(_) => RealtimeOutcome::Done,
            Err(refusal) => refused(refusal),
        })
    })
}

/// Writes at most one Opus packet of the agent's audio (one 20 ms frame, mono, encoded at
/// `output_sample_rate`) into `buf`; `*written` gets its length, 0 when no whole frame is ready
/// yet. Call it every 20 ms, or until it writes 0. The session needs `output_codec` `"opus"`
/// (else `VB_ERR_INVALID_STATE`); session keys `opus_complexity` and `opus_bitrate` tune the
/// encoder. The frame the agent's audio ends in is completed with silence once no more audio
/// came for 40 ms.
///
/// A packet longer than `capacity` is `VB_ERR_INVALID_ARGUMENT` and is kept for the next call
/// (no audio is lost); `VB_OPUS_MAX_PACKET` bytes always suffice. On failure `*written` is left
/// untouched. Realtime-safe: never blocks, allocates or locks.
///
/// # Safety
/// `session` is NULL or a live session; `buf` is NULL or valid for `capacity` bytes; `written` is
/// valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_session_read_opus(
    session: *mut VbSession,
    buf: *mut u8,
    capacity: usize,
    written: *mut usize,
) -> VbStatus {
    guard_realtime(|| {
        // SAFETY: forwarded caller contract.
        let session = unsafe { required_ref(session, "session") }?;
        if written.is_null() {
            return Err(Error::invalid_argument("written is NULL"));
        }
        let buffer: &mut [u8] = match (buf.is_null(), capacity) {
            (_, 0) => &mut [],
            (true, _) => return Err(Error::invalid_argument("buf is NULL but capacity is not 0")),
            // SAFETY: non-NULL and valid for `capacity` bytes per the contract.
            (false, n) => unsafe { std::slice::from_raw_parts_mut(buf, n) },
        };
        Ok(match session.session.read_opus(buffer)? {
            Ok(n) => {
                // SAFETY: checked non-NULL; valid for one write per the contract.
                unsafe { *written = n };
                RealtimeOutcome::Done
            }
            Err(refusal) => refused(refusal),
        })
    })
}
