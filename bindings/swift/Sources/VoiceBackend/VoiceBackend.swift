// A thin Swift wrapper over the C ABI of libvoicebackend (voicebackend.h), mirroring the C++
// wrapper (bindings/cpp/voicebackend.hpp). Written against the header but never compiled on the
// development machines (no Swift toolchain there): see README.md.
//
// Failures throw VoiceBackendError (status + vb_last_error_message(), read on the same thread
// right after the failed call; no `await` lies between the two). Callbacks run on engine threads:
// the agent on an agent worker thread (it may block; freeing the session waits for it), the
// event handler on the session's event thread, processors on every session's realtime thread,
// concurrently (no blocking, no allocation there). A throwing agent ends its turn with
// VB_ERR_PROVIDER, reported as a VB_EVENT_ERROR event.
//
// Lifetimes: a Session does not keep its Backend alive. Releasing the backend first stops its
// sessions (their calls then throw VB_ERR_INVALID_STATE); releasing them afterwards is fine.

@_exported import CVoiceBackend  // VbStatus, VbEventKind, VbSessionState, VbHealth, …

/// A failed call: the status and the library's reason.
public struct VoiceBackendError: Error, CustomStringConvertible {
    /// The status the call returned.
    public let status: VbStatus
    /// vb_last_error_message() of the failed call, as is.
    public let message: String

    public init(status: VbStatus, message: String) {
        self.status = status
        self.message = message
    }

    /// The message, led by the status name (once).
    public var description: String {
        let name = statusName(status)
        if message.hasPrefix(name) { return message }
        return message.isEmpty ? name : "\(name): \(message)"
    }

    /// The error of the call that just failed on this thread.
    static func last(_ status: VbStatus) -> VoiceBackendError {
        VoiceBackendError(status: status, message: vb_last_error_message().map { String(cString: $0) } ?? "")
    }
}

/// The name of a status, e.g. "VB_ERR_INVALID_CONFIG".
public func statusName(_ status: VbStatus) -> String {
    String(cString: vb_status_str(Int32(truncatingIfNeeded: status.rawValue)))
}

/// The crate version of the loaded library, e.g. "0.1.0".
public var version: String { String(cString: vb_version()) }

/// The C ABI version of the loaded library; compare with VB_ABI_VERSION.
public var abiVersion: UInt32 { vb_abi_version() }

/// The JSON array of registered backend provider names, e.g. ["local"].
public func registryList() throws -> String {
    try fillString { vb_registry_list($0, $1, $2) }
}

@inline(__always)
func check(_ status: VbStatus) throws {
    if status != VB_OK { throw VoiceBackendError.last(status) }
}

/// Refuses text with a NUL byte, which C would silently cut short.
func checkNoNul(_ text: String, _ what: String) throws {
    if text.utf8.contains(0) {
        throw VoiceBackendError(status: VB_ERR_INVALID_ARGUMENT, message: "\(what) contains a NUL byte")
    }
}

/// For the vb_* functions that fill a caller's buffer and report the size they need.
func fillString(_ fill: (UnsafeMutablePointer<CChar>?, Int, UnsafeMutablePointer<Int>?) -> VbStatus) throws -> String {
    var capacity = 64
    while true {
        var buf = [CChar](repeating: 0, count: capacity)
        var needed = 0
        let status = buf.withUnsafeMutableBufferPointer { fill($0.baseAddress, $0.count, &needed) }
        if status == VB_OK {
            return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
        if status == VB_ERR_INVALID_ARGUMENT && needed > capacity {
            capacity = needed
            continue
        }
        throw VoiceBackendError.last(status)
    }
}

/// One session event, copied out of the library.
public struct Event {
    public let kind: VbEventKind
    /// Microseconds since the session was created (monotonic).
    public let timestampMicroseconds: UInt64
    /// The session state after the event.
    public let state: VbSessionState
    /// Transcript, reply or error text; nil when the kind carries none.
    public let text: String?
    /// For VB_EVENT_ERROR.
    public let error: VbStatus
    /// For VB_EVENT_AUDIO_DROPPED.
    public let droppedSamples: UInt64
    /// For VB_EVENT_TURN_METRICS (microseconds from the end of user speech).
    public let metrics: VbTurnMetrics

    init(_ e: VbEvent) {
        kind = e.kind
        timestampMicroseconds = e.timestamp_us
        state = e.state
        text = e.text.map { String(cString: $0) }
        error = e.error
        droppedSamples = e.dropped_samples
        metrics = e.metrics
    }
}

/// The streaming reply of one agent call; valid only while the agent runs (do not keep it).
public struct Reply {
    let handle: OpaquePointer

    /// Appends text; TTS speaks complete sentences as they arrive. Throws VB_ERR_INVALID_STATE
    /// after end() or once barge-in cancelled the reply (letting that error leave the agent is
    /// fine and is not reported as a failure).
    public func write(_ text: String) throws {
        try checkNoNul(text, "reply text")
        try check(vb_reply_write(handle, text))
    }

    /// Ends the reply (returning from the agent ends it too).
    public func end() throws { try check(vb_reply_end(handle)) }

    /// Whether barge-in cancelled the reply.
    public var isCancelled: Bool { vb_reply_is_cancelled(handle) }
}

/// An agent that answers a whole transcript with a whole reply.
public typealias Agent = (_ transcript: String) throws -> String
/// An agent that streams its reply.
public typealias StreamingAgent = (_ transcript: String, _ reply: Reply) throws -> Void
/// Push delivery of events (on the session's event thread); without one, pollEvent().
public typealias EventHandler = (_ event: Event) -> Void
/// An audio processor: in place, at the given sample rate. Realtime threads, concurrently.
public typealias Processor = (_ pcm: UnsafeMutableBufferPointer<Int16>, _ sampleRate: UInt32) -> Void

/// What the C callbacks of one session reach through user_data (held by the Session).
final class SessionCallbacks {
    var agent: Agent?
    var streamingAgent: StreamingAgent?
    var onEvent: EventHandler?

    init(agent: Agent?, streamingAgent: StreamingAgent?, onEvent: EventHandler?) {
        self.agent = agent
        self.streamingAgent = streamingAgent
        self.onEvent = onEvent
    }
}

private let onTranscriptTrampoline: @convention(c) (
    UnsafeMutableRawPointer?, OpaquePointer?, UnsafePointer<CChar>?, OpaquePointer?
) -> VbStatus = { userData, _, transcript, reply in
    guard let userData = userData, let reply = reply else { return VB_ERR_INVALID_ARGUMENT }
    let callbacks = Unmanaged<SessionCallbacks>.fromOpaque(userData).takeUnretainedValue()
    let text = transcript.map { String(cString: $0) } ?? ""
    do {
        if let streaming = callbacks.streamingAgent {
            try streaming(text, Reply(handle: reply))
        } else if let agent = callbacks.agent {
            let answer = try agent(text)
            if answer.utf8.contains(0) { return VB_ERR_PROVIDER }
            if !answer.isEmpty {
                let status = vb_reply_write(reply, answer)
                if status != VB_OK { return vb_reply_is_cancelled(reply) ? VB_OK : status }
            }
        }
        return VB_OK  // returning ends the reply
    } catch {
        // A reply cut short by barge-in is no failure of the agent.
        return vb_reply_is_cancelled(reply) ? VB_OK : VB_ERR_PROVIDER
    }
}

private let onEventTrampoline: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<VbEvent>?) -> Void = {
    userData, event in
    guard let userData = userData, let event = event else { return }
    let callbacks = Unmanaged<SessionCallbacks>.fromOpaque(userData).takeUnretainedValue()
    callbacks.onEvent?(Event(event.pointee))
}

final class ProcessorBox {
    let process: Processor
    init(_ process: @escaping Processor) { self.process = process }
}

private let processorTrampoline: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int16>?, Int, UInt32) -> Void = {
    userData, pcm, samples, sampleRate in
    guard let userData = userData, let pcm = pcm else { return }
    let box = Unmanaged<ProcessorBox>.fromOpaque(userData).takeUnretainedValue()
    box.process(UnsafeMutableBufferPointer(start: pcm, count: samples), sampleRate)
}

/// A configured engine. Releasing it stops and frees it (its sessions stop).
public final class Backend {
    /// The C handle (owned by this object).
    public let handle: OpaquePointer
    /// Processors stay alive as long as the backend.
    private var processors: [ProcessorBox] = []

    /// Creates a backend from JSON configuration; throws VB_ERR_INVALID_CONFIG naming the field,
    /// VB_ERR_PROVIDER_NOT_FOUND, …
    public init(config json: String) throws {
        var out: OpaquePointer?
        try check(vb_backend_create(json, &out))
        handle = out!
    }

    deinit {
        // The backend first (no processor runs any more), then the processors.
        vb_backend_free(handle)
    }

    /// Starts the I/O runtime; sessions can be created afterwards.
    public func start() throws { try check(vb_backend_start(handle)) }

    /// Graceful stop: refuses new sessions, lets in-flight replies finish for up to the drain.
    public func stop(drainMilliseconds: UInt32 = 0) throws {
        try check(vb_backend_stop(handle, drainMilliseconds))
    }

    /// Counters over all sessions and a verdict.
    public func health() throws -> VbHealth {
        var health = VbHealth()
        try check(vb_backend_health(handle, &health))
        return health
    }

    /// Sessions created and not yet stopped.
    public var activeSessions: UInt32 { vb_backend_active_sessions(handle) }

    /// Adds an audio processor applied, in order (lower first), to every frame of every session
    /// before VAD. Only before start(); not to be called concurrently with itself.
    public func addProcessor(name: String, order: Int32, _ process: @escaping Processor) throws {
        try checkNoNul(name, "processor name")
        let box = ProcessorBox(process)
        try name.withCString { cName in
            var processor = VbProcessor(
                user_data: Unmanaged.passUnretained(box).toOpaque(),
                name: cName,
                order: order,
                process: processorTrampoline
            )
            try check(vb_backend_add_processor(handle, &processor))
        }
        processors.append(box)
    }

    /// A session whose agent answers each transcript with one string. An empty config means all
    /// defaults. With onEvent, events are pushed to it; else poll them.
    public func createSession(config: String = "", agent: @escaping Agent,
                              onEvent: EventHandler? = nil) throws -> Session {
        try makeSession(config, SessionCallbacks(agent: agent, streamingAgent: nil, onEvent: onEvent))
    }

    /// A session whose agent streams its reply.
    public func createSession(config: String = "", streamingAgent: @escaping StreamingAgent,
                              onEvent: EventHandler? = nil) throws -> Session {
        try makeSession(config, SessionCallbacks(agent: nil, streamingAgent: streamingAgent, onEvent: onEvent))
    }

    /// A session without an agent on this side (s2s pipelines).
    public func createSession(config: String = "", onEvent: EventHandler? = nil) throws -> Session {
        try makeSession(config, SessionCallbacks(agent: nil, streamingAgent: nil, onEvent: onEvent))
    }

    private func makeSession(_ config: String, _ callbacks: SessionCallbacks) throws -> Session {
        var c = VbCallbacks(
            user_data: Unmanaged.passUnretained(callbacks).toOpaque(),
            on_transcript: (callbacks.agent != nil || callbacks.streamingAgent != nil)
                ? onTranscriptTrampoline : nil,
            on_event: callbacks.onEvent != nil ? onEventTrampoline : nil
        )
        var out: OpaquePointer?
        if config.isEmpty {
            try check(vb_session_create(handle, nil, &c, &out))
        } else {
            try check(vb_session_create(handle, config, &c, &out))
        }
        return Session(handle: out!, callbacks: callbacks)
    }
}

/// One conversation. Releasing it stops and frees it (waiting for a running agent call).
public final class Session {
    /// The C handle (owned by this object).
    public let handle: OpaquePointer
    /// What the callbacks reach; released after the session is freed.
    private let callbacks: SessionCallbacks

    init(handle: OpaquePointer, callbacks: SessionCallbacks) {
        self.handle = handle
        self.callbacks = callbacks
    }

    deinit {
        // After vb_session_free no callback runs; then `callbacks` is released.
        vb_session_free(handle)
    }

    /// Starts the realtime thread and pipeline.
    public func start() throws { try check(vb_session_start(handle)) }
    /// Stops the session; no callback runs after it returns. Idempotent.
    public func stop() throws { try check(vb_session_stop(handle)) }
    /// Speaks text without a user turn (a greeting), after any reply in progress.
    public func say(_ text: String) throws {
        try checkNoNul(text, "say text")
        try check(vb_session_say(handle, text))
    }
    /// Host-side barge-in: stops playback now and cancels the reply in progress.
    public func interrupt() throws { try check(vb_session_interrupt(handle)) }
    /// The session id.
    public func id() throws -> String {
        try fillString { vb_session_id(handle, $0, $1, $2) }
    }

    /// Copies mono PCM at input_sample_rate into the session; returns the samples taken (fewer
    /// than given when the input ring is full: the rest is dropped and reported as
    /// VB_EVENT_AUDIO_DROPPED). Realtime-safe; throws only on a real error (e.g. not started).
    public func processAudio(_ pcm: UnsafeBufferPointer<Int16>) throws -> Int {
        var accepted = 0
        let status = vb_session_process_audio(handle, pcm.baseAddress, pcm.count, &accepted)
        if status != VB_OK && status != VB_ERR_BUFFER_FULL { throw VoiceBackendError.last(status) }
        return accepted
    }

    public func processAudio(_ pcm: [Int16]) throws -> Int {
        try pcm.withUnsafeBufferPointer { try processAudio($0) }
    }

    /// Copies up to out.count samples of agent audio at output_sample_rate; returns how many
    /// (0 when nothing is due). Realtime-safe.
    public func readAudio(into out: UnsafeMutableBufferPointer<Int16>) throws -> Int {
        var written = 0
        try check(vb_session_read_audio(handle, out.baseAddress, out.count, &written))
        return written
    }

    public func readAudio(into out: inout [Int16]) throws -> Int {
        try out.withUnsafeMutableBufferPointer { try readAudio(into: $0) }
    }

    /// The next waiting event, if any (non-blocking). Throws VB_ERR_INVALID_STATE when the
    /// session delivers its events to an event handler.
    public func pollEvent() throws -> Event? {
        var event = VbEvent()
        var hasEvent = false
        try check(vb_session_poll_event(handle, &event, &hasEvent))
        return hasEvent ? Event(event) : nil
    }
}
