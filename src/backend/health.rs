//! Backend health: counters summed over all sessions and an overall verdict.

/// Overall verdict. Values fixed by the C contract.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VbHealthStatus {
    /// Running, below 90% of the session limit, no audio lost since the last check.
    VB_HEALTH_HEALTHY = 0,
    /// Running, but near the session limit or audio was lost / late since the last check.
    VB_HEALTH_DEGRADED = 1,
    /// Not running (not started, or stopped).
    VB_HEALTH_UNHEALTHY = 2,
}

/// A health snapshot (`vb_backend_health`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbHealth {
    /// The verdict.
    pub status: VbHealthStatus,
    /// Sessions created and not yet stopped.
    pub active_sessions: u32,
    /// Internal frames processed since start, all sessions.
    pub frames_processed: u64,
    /// Input overruns and pipeline stalls that lost audio, in frames.
    pub frames_dropped: u64,
    /// Frames processed later than one frame period after they arrived.
    pub deadline_misses: u64,
    /// Running sessions whose realtime thread got elevated (realtime) scheduling.
    pub realtime_threads_elevated: u32,
    /// Audio packets network transports (LiveKit, WebRTC) and `vb_session_process_opus`
    /// received, all sessions.
    pub media_packets_received: u64,
    /// Of those, packets that never arrived in time (or that a host reported lost to
    /// `vb_session_process_opus`): their audio was concealed or rebuilt.
    pub media_packets_lost: u64,
    /// 20 ms frames the decoders filled in (concealment, or in-band FEC).
    pub media_frames_concealed: u64,
}
