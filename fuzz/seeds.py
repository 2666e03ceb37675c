#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the messages the test suite uses (the
README's configurations, the test servers' Deepgram, ElevenLabs, OpenAI and Realtime messages,
the Pipecat bot's RTVI, LiveKit's protobuf messages, tiny WAV and model.bin files). Deterministic
and re-runnable: `python3 fuzz/seeds.py` rewrites the same files. Only the standard library."""

import base64
import json
import os
import struct
import wave
import io

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    path = os.path.join(ROOT, target)
    os.makedirs(path, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def j(value):
    return json.dumps(value, separators=(",", ":"))


# --- configuration -------------------------------------------------------------------------------
MINIMAL = {"provider": "local", "stt_provider": "whisper", "tts_provider": "espeak"}
write("config_backend", "minimal", j(MINIMAL))
write("config_backend", "tests-minimal", '{"provider":"local","stt_provider":"a","tts_provider":"b"}')
write("config_backend", "full", j({
    "provider": "local", "pipeline_type": "stt_tts",
    "stt_provider": "deepgram", "stt_config": {"api_key": "k", "model": "nova-3", "language": "en",
        "endpointing_ms": 300, "interim_results": True, "keep_alive_ms": 3000, "timeout_ms": 10000},
    "tts_provider": "elevenlabs", "tts_config": {"api_key": "k", "voice_id": "v", "output_format": "pcm_24000",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.7, "speed": 1.0},
        "chunk_length_schedule": [120, 160]},
    "latency_target_ms": 500, "max_concurrent_sessions": 100,
    "audio": {"sample_rate": 16000, "frame_ms": 20, "input_buffer_ms": 500, "output_buffer_ms": 200,
              "reply_buffer_ms": 2000, "realtime_priority": True, "realtime_threads": 0},
    "vad": {"mode": 2, "start_ms": 40, "stop_ms": 100},
    "turn": {"silence_ms": 500, "min_speech_ms": 150, "max_turn_ms": 30000},
    "interruptions": {"enabled": True, "min_speech_ms": 200}, "agent_timeout_ms": 10000,
    "retry": {"max_attempts": 5, "initial_backoff_ms": 100, "max_backoff_ms": 5000},
    "rate_limit": {"sessions_per_second": 10, "burst": 20, "per_user_sessions_per_minute": 5},
    "auth": {"jwt_hs256_secret": "secret"},
}))
write("config_backend", "openai", j({"provider": "local", "stt_provider": "openai",
    "stt_config": {"api_key": "sk-x", "base_url": "http://127.0.0.1:9", "language": "en", "stream": True},
    "tts_provider": "openai", "tts_config": {"api_key": "sk-x", "voice": "alloy", "speed": 1.0}}))
write("config_backend", "s2s", j({"provider": "local", "pipeline_type": "s2s",
    "s2s_provider": "openai-realtime", "s2s_config": {"api_key": "sk-x", "base_url": "ws://127.0.0.1:9",
    "turn_detection": "server", "voice": "marin", "timeout_ms": 5000}}))
write("config_backend", "pipecat", j({"provider": "pipecat",
    "provider_config": {"pipecat_url": "ws://127.0.0.1:8765/ws", "timeout_ms": 10000}}))
write("config_backend", "livekit", j({"provider": "livekit", "stt_provider": "whisper", "tts_provider": "espeak",
    "provider_config": {"url": "ws://127.0.0.1:7880", "api_key": "devkey", "api_secret": "secret",
    "agent_identity": "agent", "opus_complexity": 5, "worker": {"agent_name": "a", "max_jobs": 4}}}))
write("config_backend", "bad-range", '{"provider":"local","stt_provider":"a","tts_provider":"b","turn":{"silence_ms":0}}')

write("config_session", "empty", "")
write("config_session", "default", "{}")
write("config_session", "full", j({"user_id": "u1", "transport": "host", "auth_token": "t",
    "admission_wait_ms": 100, "input_sample_rate": 48000, "output_sample_rate": 24000,
    "input_codec": "opus", "output_codec": "opus", "opus_complexity": 5, "opus_bitrate": 32000,
    "conversation_id": "c-1", "metadata": {"k": [1, 2.5, None, True, "v"]}}))
write("config_session", "livekit", j({"transport": "webrtc", "room": "demo", "connection_url": "ws://x",
    "connection_token": "tok", "user_id": "user"}))

# --- JWT -----------------------------------------------------------------------------------------
def jwt_seed(now, mode, rest):
    return struct.pack("<Q", now) + bytes([mode]) + rest

NOW = 1_700_000_000
header = j({"alg": "HS256", "typ": "JWT"})
claims = j({"sub": "user-1", "iss": "devkey", "exp": NOW + 600, "nbf": NOW - 10,
            "video": {"roomJoin": True, "room": "demo", "canPublish": True, "canSubscribe": True}})
write("jwt", "signed", jwt_seed(NOW, 1, (header + "\n" + claims).encode()))
write("jwt", "signed-other-key", jwt_seed(NOW, 3, (header + "\n" + claims).encode()))
write("jwt", "expired", jwt_seed(NOW + 10_000, 1, (header + "\n" + claims).encode()))
write("jwt", "alg-none", jwt_seed(NOW, 1, (j({"alg": "none"}) + "\n" + claims).encode()))
write("jwt", "no-grant", jwt_seed(NOW, 1, (header + "\n" + j({"sub": "u", "exp": NOW + 1})).encode()))
b64 = lambda s: base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode()
write("jwt", "raw", jwt_seed(NOW, 0, (b64(header) + "." + b64(claims) + ".c2lnbmF0dXJl").encode()))

# --- Pipecat -------------------------------------------------------------------------------------
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, value):
    """A protobuf field: bytes/str/message (length-delimited), int (varint) or bool."""
    if isinstance(value, bool):
        return varint(number << 3) + varint(int(value))
    if isinstance(value, int):
        return varint(number << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def message(*fields):
    return b"".join(field(n, v) for n, v in fields if v is not None)


def frames_seq(*steps):
    """pipecat_frame records: bytes are a message, "cancel", "timeout" and "lost" the other steps."""
    out = bytearray()
    for step in steps:
        if isinstance(step, bytes):
            out += struct.pack("<H", len(step)) + step
        else:
            out += struct.pack("<H", {"cancel": 1, "timeout": 2, "lost": 3}[step] << 14)
    return bytes(out)


def message_frame(m):
    return field(4, message((1, m if isinstance(m, str) else j(m))))


pcm = struct.pack("<3h", 1, -2, 300)
audio = field(2, message((3, pcm), (4, 16000), (5, 1)))
stereo = field(2, message((1, 7), (2, "OutputAudioRawFrame"), (3, struct.pack("<4h", 100, 300, -50, -150)),
                          (4, 24000), (5, 2), (6, 123)))
interruption = bytes([0x2A, 0x00])
text_frame = field(1, message((1, 3), (2, "TextFrame"), (3, "Hello there.")))
transcription_frame = field(3, message((1, 4), (2, "TranscriptionFrame"), (3, "hello"), (4, "user"), (5, "2025-01-01T00:00:00Z")))

# Every distinct RTVI message type the recordings of real bots hold (tests/pipecat/rtvi/), and
# each recording as the sequence of message frames a session reads.
RECORDINGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "pipecat", "rtvi")
seen = set()
for name in sorted(os.listdir(RECORDINGS)):
    if not name.endswith(".jsonl"):
        continue
    lines = [line.strip() for line in open(os.path.join(RECORDINGS, name)) if line.strip()]
    for line in lines:
        kind = json.loads(line).get("type")
        if kind not in seen:
            seen.add(kind)
            write("pipecat_rtvi", f"recorded-{kind}", line)
    messages = [message_frame(line) for line in lines]
    write("pipecat_frame", f"recorded-{name[:-6]}", frames_seq(*messages))
    # The same with the session barging in halfway, the bot confirming, and audio after it.
    half = len(messages) // 2
    write("pipecat_frame", f"recorded-{name[:-6]}-barge-in",
          frames_seq(*messages[:half], audio, "cancel", audio, messages[half], interruption, *messages[half:], "lost"))
RTVI = [
    {"label": "rtvi-ai", "type": "user-input", "data": {"text": " Hello there. ", "input_type": "transcription", "timestamp": "t", "final": True}},
    {"label": "rtvi-ai", "type": "user-transcription", "data": {"text": "hello", "user_id": "", "timestamp": "t", "final": False}},
    {"label": "rtvi-ai", "type": "user-started-speaking"},
    {"label": "rtvi-ai", "type": "user-stopped-speaking"},
    {"label": "rtvi-ai", "type": "bot-llm-started"},
    {"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": "Hi!"}},
    {"label": "rtvi-ai", "type": "bot-llm-stopped"},
    {"label": "rtvi-ai", "type": "bot-stopped-speaking"},
    {"label": "rtvi-ai", "type": "error", "data": {"error": "LLM failed", "fatal": False}},
    {"label": "rtvi-ai", "type": "bot-ready", "id": "1", "data": {"version": "2.2.0", "about": {}}},
]
for i, m in enumerate(RTVI):
    write("pipecat_rtvi", f"rtvi-{i}", j(m))
write("pipecat_frame", "hand-made-rtvi", frames_seq(*[message_frame(m) for m in RTVI]))
write("pipecat_frame", "frames", frames_seq(audio, stereo, interruption, text_frame, transcription_frame))
write("pipecat_frame", "unconfirmed", frames_seq(audio, "cancel", "cancel", stereo, interruption, audio, "timeout", audio))

# --- Deepgram ------------------------------------------------------------------------------------
def results(start, end, text, final):
    return j({"type": "Results", "channel_index": [0, 1], "duration": end - start, "start": start,
              "is_final": final, "speech_final": final, "from_finalize": False,
              "channel": {"alternatives": [{"transcript": text, "confidence": 0.9, "words": []}]},
              "metadata": {"request_id": "r", "model_info": {"name": "nova-3", "version": "v", "arch": "a"},
                           "model_uuid": "u"}})

def deepgram(flags, audio, base, lines):
    return bytes([flags]) + struct.pack("<II", audio, base) + "\n".join(lines).encode()

metadata = j({"type": "Metadata", "transaction_key": "deprecated", "request_id": "r", "sha256": "00",
              "created": "2025-01-01T00:00:00.000Z", "duration": 1.5, "channels": 1})
write("deepgram", "turn", deepgram(1, 32000, 0, [results(0, 0.8, "hello", False),
    results(0, 1.2, "hello there", True), results(1.2, 2.0, "how are you", True), metadata]))
write("deepgram", "resumed", deepgram(3, 24000, 8000, [results(0, 0.5, "again", True),
    j({"type": "UtteranceEnd", "last_word_end": 0.5}), j({"type": "SpeechStarted", "timestamp": 0.1})]))
write("deepgram", "error", deepgram(0, 100, 0, [j({"type": "Error", "variant": "DATA-0000",
    "description": "bad audio", "message": "x"})]))
write("deepgram", "malformed", deepgram(1, 100, 0, ['{"type":"Results","channel_index":[0,1],"is_final":true}', "{}", "not json"]))

# --- ElevenLabs ----------------------------------------------------------------------------------
sent = "Hello there. How are you? "
chunk = base64.b64encode(struct.pack("<5h", 0, 100, -100, 200, -200)).decode()
align = {"chars": list("Hello "), "charStartTimesMs": [0, 10, 20, 30, 40, 50], "charsDurationsMs": [10] * 6}
write("elevenlabs", "reply", "\n".join([sent,
    j({"audio": chunk, "alignment": align, "normalizedAlignment": align, "isFinal": None}),
    j({"audio": base64.b64encode(b"\x01\x02\x03").decode(), "alignment": None, "isFinal": False}),
    j({"audio": base64.b64encode(b"\x04").decode()}),
    j({"isFinal": True})]))
write("elevenlabs", "error", "\n".join(["Hi ", j({"message": "timeout", "error": "input_timeout_exceeded", "code": 1008})]))
write("elevenlabs", "malformed", "\n".join(["Hi ", j({"audio": 12345, "isFinal": False}), j({"audio": "@@@"}), "{}"]))

# --- OpenAI HTTP ---------------------------------------------------------------------------------
def http_error(status, body):
    return bytes([0]) + struct.pack("<H", status) + body.encode()

write("openai_http", "401", http_error(401, j({"error": {"message": "Incorrect API key provided: sk-test-123.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})))
write("openai_http", "400", http_error(400, j({"error": {"message": "Invalid file format", "type": "invalid_request_error", "param": None, "code": None}})))
write("openai_http", "429", http_error(429, j({"error": {"message": "Quota", "type": "insufficient_quota", "code": "insufficient_quota"}})))
write("openai_http", "503", http_error(503, "upstream down"))
write("openai_http", "transcription", bytes([1]) + j({"text": "Hello there."}).encode())
events = "".join(f"data: {j(e)}\n\n" for e in [
    {"type": "transcript.text.delta", "delta": "Hello"},
    {"type": "transcript.text.delta", "delta": " there."},
    {"type": "transcript.text.done", "text": "Hello there."}]) + "data: [DONE]\n\n"
write("openai_http", "stream", bytes([2, 2]) + struct.pack("<HH", 10, 70) + events.encode())
write("openai_http", "stream-crlf", bytes([2, 1]) + struct.pack("<H", 5) + events.replace("\n", "\r\n").encode())
write("openai_http", "stream-utf8", bytes([2, 0]) + ("data: " + json.dumps({"type": "transcript.text.delta", "delta": "café"}, ensure_ascii=False) + "\n\n").encode())

# --- OpenAI Realtime -----------------------------------------------------------------------------
def rt(kind, **fields):
    return "S" + j({"type": kind, "event_id": "event_1", **fields})

audio = base64.b64encode(struct.pack("<4h", 0, 1000, -1000, 0)).decode()
turn = ["A" + "xyxyxyxyxyxyxyxy", "E",
        rt("input_audio_buffer.committed", item_id="item_u1"),
        rt("conversation.item.input_audio_transcription.completed", item_id="item_u1", content_index=0, transcript=" Hello. "),
        rt("response.created", response={"id": "resp_1", "object": "realtime.response", "status": "in_progress"}),
        rt("response.output_audio.delta", response_id="resp_1", item_id="item_a1", output_index=0, content_index=0, delta=audio),
        rt("response.output_audio_transcript.delta", response_id="resp_1", item_id="item_a1", output_index=0, content_index=0, delta="Hi"),
        rt("response.done", response={"id": "resp_1", "status": "completed", "output": []})]
write("openai_realtime", "engine", "\n".join(["engine"] + turn))
write("openai_realtime", "server", "\n".join(["server"] + turn))
write("openai_realtime", "barge-in", "\n".join(["engine"] + turn[:6] + ["X",
    rt("response.output_audio.delta", response_id="resp_1", item_id="item_a1", output_index=0, content_index=0, delta=audio),
    rt("response.done", response={"id": "resp_1", "status": "cancelled", "status_details": {"type": "cancelled", "reason": "client_cancelled"}})]))
write("openai_realtime", "errors", "\n".join(["engine", "A" + "ab" * 20, "E",
    rt("error", error={"type": "invalid_request_error", "code": "response_cancel_not_active", "message": "m", "param": None, "event_id": "x"}),
    rt("error", error={"type": "server_error", "code": "x", "message": "failed", "event_id": "vb_create_1"}),
    rt("error", error={"type": "invalid_request_error", "code": "bad", "message": "no", "event_id": "vb_session_update"}),
    "B", "C", "A" + "cd" * 10, "R", "E",
    rt("response.done", response={"id": "resp_9", "status": "failed", "status_details": {"error": {"type": "server_error", "code": "c", "message": "boom"}}}),
    "Snot json"]))

# --- Whisper files -------------------------------------------------------------------------------
def ct2_string(s):
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def ct2_model(version=6):
    out = struct.pack("<I", version)
    if version >= 2:
        out += ct2_string("WhisperSpec") + struct.pack("<I", 3)
    variables = [
        ("decoder/embeddings/weight", [2, 3], 4, struct.pack("<6e", 0.0, 1.0, -2.5, 0.125, 65504.0, -0.0)),
        ("encoder/conv1/bias", [2], 0, struct.pack("<2f", 1.5, -3.25)),
        ("decoder/num_heads", [], 2, struct.pack("<h", 6)),
        ("decoder/pre_norm", [], 1, struct.pack("<b", 1)),
        ("encoder/scale", [1], 5, b"\x80\x3f"),
    ]
    names = {0: "float32", 1: "int8", 2: "int16", 4: "float16", 5: "bfloat16"}
    out += struct.pack("<I", len(variables))
    for name, shape, dtype, data in variables:
        out += ct2_string(name) + bytes([len(shape)]) + b"".join(struct.pack("<I", d) for d in shape)
        out += bytes([dtype]) if version >= 4 else ct2_string(names[dtype])
        out += struct.pack("<I", len(data)) + data
    if version >= 3:
        out += struct.pack("<I", 1) + ct2_string("decoder/projection/weight") + ct2_string("decoder/embeddings/weight")
    return out

for v in [1, 3, 6]:
    write("ct2_model", f"v{v}", ct2_model(v))

tokenizer = j({"model": {"type": "BPE", "vocab": {"H": 0, "ello": 1, "\u0120there": 2, ".": 3, "\u0120": 4}},
               "added_tokens": [{"id": 5, "content": "<|endoftext|>"}, {"id": 6, "content": "<|startoftranscript|>"},
                                {"id": 7, "content": "<|notimestamps|>"}, {"id": 8, "content": "<|nocaptions|>"}]})
config = j({"suppress_ids": [1, 3, -1, 99], "suppress_ids_begin": [4, 5], "lang_ids": []})
ids = struct.pack("<8H", 6, 7, 0, 1, 2, 3, 5, 300)
write("whisper_tokenizer", "small", struct.pack("<H", 9) + tokenizer.encode() + b"\0" + config.encode() + b"\0" + ids)
write("whisper_tokenizer", "no-config", struct.pack("<H", 12) + tokenizer.encode() + b"\0{}\0" + ids)

# --- WAV -----------------------------------------------------------------------------------------
def wav(channels, width, rate, frames):
    buf = io.BytesIO()
    w = wave.open(buf, "wb")
    w.setnchannels(channels)
    w.setsampwidth(width)
    w.setframerate(rate)
    w.writeframes(frames)
    w.close()
    return buf.getvalue()

write("wav_reader", "mono16", wav(1, 2, 16000, struct.pack("<8h", 0, 100, -100, 32767, -32768, 5, 6, 7)))
write("wav_reader", "stereo8", wav(2, 1, 8000, bytes([128, 130, 120, 255, 0, 1])))
write("wav_reader", "mono24", wav(1, 3, 48000, b"\x00\x00\x80\xff\xff\x7f\x01\x00\x00"))
# IEEE float (format 3), written by hand: the wave module writes PCM only.
floats = struct.pack("<4f", 0.0, 0.5, -0.5, 1.0)
fmt = struct.pack("<HHIIHH", 3, 1, 22050, 22050 * 4, 4, 32)
write("wav_reader", "float32", b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(floats)) + b"WAVE"
      + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(floats)) + floats)

# --- LiveKit -------------------------------------------------------------------------------------
def participant(sid, identity, state=2, mic=None, kind=0):
    tracks = [(4, message((1, mic), (2, 0), (3, "microphone"), (9, 2)))] if mic else []
    return message((1, sid), (2, identity), (3, state), *tracks, (14, kind))

OFFER = ("v=0\r\no=- 5058682828002148772 3 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
         "a=msid-semantic: WMS *\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
         "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:S5hk\r\na=ice-pwd:0zV/Yu3y8aDzbHgqWhnVQhqP\r\n"
         "a=ice-options:trickle\r\na=fingerprint:sha-256 8C:64:ED:03:76:D0:3D:B4:88:08:91:64:08:80:A8:C6:"
         "5A:BF:8B:4E:38:27:96:CA:08:49:25:73:46:60:20:DC\r\na=setup:actpass\r\na=mid:0\r\n"
         "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendonly\r\n"
         "a=msid:PA_x TR_mic\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 nack\r\n"
         "a=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1001 cname:user\r\n")
ANSWER = OFFER.replace("a=setup:actpass", "a=setup:passive").replace("a=sendonly", "a=recvonly")
CANDIDATE = j({"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host generation 0",
               "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "S5hk"})

def signal(number, body):
    return field(number, body)

join = signal(1, message((1, message((1, "RM_demo"), (2, "demo"))), (2, participant("PA_agent", "agent")),
                         (3, participant("PA_user", "user", mic="TR_mic")), (4, "1.13.5"),
                         (10, 15), (11, 5)))
offer = signal(3, message((1, "offer"), (2, OFFER), (3, 1), (4, message((1, "0"), (2, "TR_mic")))))
answer = signal(2, message((1, "answer"), (2, ANSWER), (3, 1)))
trickle = signal(4, message((1, CANDIDATE), (2, 1)))
published = signal(6, message((1, "TR_agent"), (2, message((1, "TR_agentsid"), (2, 0)))))
update = signal(5, message((1, participant("PA_user2", "user2", mic="TR_mic2")),
                           (1, participant("PA_user", "user", state=3))))
leave = signal(8, message((1, True), (2, 2)))
refresh = field(16, "token")

def records(*parts):
    out = bytearray()
    for kind, body in parts:
        header = len(body) | (0x8000 if kind != "signal" else 0) | (0x4000 if kind == "publisher" else 0)
        out += struct.pack("<H", header) + body
    return bytes(out)

# A STUN binding request (RFC 5389 header, no attributes) and an RTP header with an Opus TOC byte.
stun = struct.pack(">HHI12s", 0x0001, 0, 0x2112A442, b"fuzz-txn-id1")
rtp = struct.pack(">BBHII", 0x80, 111, 1, 960, 1001) + bytes([0xFC, 0xFF, 0xFE])
write("livekit_signal", "join-offer-trickle", bytes([1]) + records(("signal", join), ("signal", offer), ("signal", trickle), ("signal", update), ("signal", leave)))
write("livekit_signal", "publish", bytes([0]) + records(("signal", join), ("signal", published), ("signal", answer), ("signal", refresh)))
write("livekit_signal", "datagrams", bytes([1]) + records(("signal", offer), ("subscriber", stun), ("subscriber", rtp), ("publisher", b"\x16\xfe\xfd" + bytes(10))))

job = message((1, "AJ_1"), (9, "AD_1"), (2, 0), (3, message((1, "RM_demo"), (2, "demo"))),
              (4, participant("PA_user", "user", mic="TR_mic")), (6, '{"k":1}'), (7, "agent"))
write("livekit_worker", "register", field(1, message((1, "AW_1"))))
write("livekit_worker", "availability", field(2, message((1, job), (2, False))))
write("livekit_worker", "assignment", field(3, message((1, job), (2, "ws://127.0.0.1:7880"), (3, "token"))))
write("livekit_worker", "termination", field(5, message((1, "AJ_1"))))
write("livekit_worker", "pong", field(4, message((1, 5), (2, 6))))

def caption(kind, state, tracks, text):
    return bytes([kind, state, tracks]) + text.encode()

write("livekit_data", "turn", b"\n".join([b"agent-AJ_1", caption(3, 1, 1, " Hello"), caption(0, 2, 1, ""),
    caption(0, 3, 1, ""), caption(1, 2, 1, "Hello there."), caption(2, 3, 1, "Hi! How can I help?"),
    caption(3, 1, 0, "again"), caption(1, 1, 0, "   "), caption(4, 1, 1, "")]))

# --- Jitter buffer -------------------------------------------------------------------------------
def packet(seq, ts, delay_ms, payload):
    return bytes([0]) + struct.pack("<HIH", seq & 0xFFFF, ts & 0xFFFFFFFF, delay_ms) + bytes([len(payload)]) + payload

PULL = b"\xff"
# TOC 0xFC: 20 ms CELT-only fullband, one frame; 0xF8: 20 ms, silence-sized payloads.
frames = [packet(i, 960 * i, 20, bytes([0xFC, 0xFF, 0xFE])) for i in range(8)]
write("media_jitter", "steady", b"".join(f + PULL for f in frames))
write("media_jitter", "reordered-lost", b"".join([frames[0], frames[2], PULL, frames[1], PULL, frames[5], PULL, PULL, frames[4], PULL, PULL]))
write("media_jitter", "late-duplicate-wrap", b"".join([packet(65534, 0xFFFFFC40, 0, b"\xfc\x00"), packet(65535, 0xFFFFFF00, 20, b"\xfc\x00"),
    PULL, PULL, packet(0, 0x000001C0, 20, b"\xfc\x00"), packet(0, 0x000001C0, 0, b"\xfc\x00"), PULL, packet(65534, 0xFFFFFC40, 500, b"\xfc\x00"), PULL,
    packet(1, 0x00000580, 60, b"\x00"), packet(2, 0, 0, b""), PULL]))

# --- Phone media streams (the vendors' documented examples, as tests/phone.rs and the protocol tests use them)
TWILIO_START = '{"event":"start","sequenceNumber":"1","start":{"accountSid":"ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","streamSid":"MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","callSid":"CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","tracks":["inbound","outbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"FirstName":"Jane","LastName":"Doe","RemoteParty":"Bob"}},"streamSid":"MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}'
TELNYX_START = '{"event":"start","sequence_number":"1","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC","start":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237","call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ","call_session_id":"ff55a038-6f5d-11ef-9692-02420aeffb1f","from":"+13122010094","to":"+13122123456","tags":["TAG1","TAG2"],"client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d","custom_parameters":{"customer_id":"customer_123"},"media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}}}'
TWILIO_MEDIA = '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"no+JhoaJjpzSHxAKBgYJ"},"streamSid":"MZX"}'
TELNYX_MEDIA = '{"event":"media","sequence_number":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"1dXV1dXV1dXV1dXV"},"stream_id":"32DE0DEA"}'
write("phone_stream", "twilio-call", b"\x00" + "\n".join([
    '{"event":"connected","protocol":"Call","version":"1.0.0"}', TWILIO_START, TWILIO_MEDIA,
    '{"event":"dtmf","streamSid":"MZX","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}',
    '{"event":"mark","sequenceNumber":"4","streamSid":"MZX","mark":{"name":"my label"}}',
    '{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC","callSid":"CA"},"streamSid":"MZX"}']).encode())
write("phone_stream", "telnyx-call", b"\x01" + "\n".join([
    '{"event":"connected","version":"1.0.0"}', TELNYX_START, TELNYX_MEDIA,
    '{"event":"dtmf","sequence_number":"5","dtmf":{"digit":"#"},"stream_id":"32DE0DEA"}',
    '{"event":"error","sequence_number":"6","payload":{"code":100003,"title":"malformed_frame","detail":"x"},"stream_id":"32DE0DEA"}',
    '{"event":"stop","sequence_number":"7","stop":{"user_id":"u","call_control_id":"c"},"stream_id":"32DE0DEA"}']).encode())
write("phone_stream", "bad-frames", b"\x00" + "\n".join([
    '{"event":"media","media":{"payload":"not base64!"}}', '{"event":"unknown"}', 'not json',
    '{"event":"media","media":{"track":"outbound","payload":"AAAA"}}']).encode())

# --- Direct WebRTC signalling (tests/webrtc/offer.sdp: an offer as aiortc makes it)
def records(*requests):
    out = bytearray()
    for method, body in requests:
        body = body.encode() if isinstance(body, str) else body
        out += struct.pack("<H", (0x8000 if method == "PATCH" else 0) | len(body)) + body
    return bytes(out)


OFFER_SDP = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "webrtc", "offer.sdp")).read()
CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
write("webrtc_offer", "offer", records(("POST", j({"sdp": OFFER_SDP, "type": "offer"}))))
write("webrtc_offer", "offer-patch-renegotiate", records(
    ("POST", j({"sdp": OFFER_SDP, "type": "offer", "requestData": {"name": "ada"}})),
    ("PATCH", j({"pc_id": "p", "candidates": [{"candidate": CANDIDATE, "sdp_mid": "0", "sdp_mline_index": 0},
                                               {"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]})),
    ("POST", j({"sdp": OFFER_SDP, "type": "offer", "pc_id": "p"})),
    ("POST", j({"sdp": OFFER_SDP, "type": "offer", "pc_id": "p", "restart_pc": True}))))
write("webrtc_offer", "refusals", records(("POST", "{"), ("POST", j({"sdp": "v=0", "type": "answer"})),
    ("POST", j({"sdp": " ", "type": "offer"})), ("POST", j({"sdp": "v=0", "type": "offer", "restart_pc": True})),
    ("POST", j({"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"})), ("PATCH", "[]")))

# --- Regressions: the inputs of the bugs the targets found (each has a unit test too) ---------
write("media_jitter", "regression-fec-of-corrupt-packet", packet(52, 0, 20, bytes([0xFC, 0xFF, 0xFE]))
      + packet(2, 1920, 40, bytes([0x26] * 31 + [0x14, 0x00, 0x03, 0xFE, 0xFF, 0xFF, 0x01])) + PULL * 4)
cafe = ("data: " + json.dumps({"type": "transcript.text.delta", "delta": "café"}, ensure_ascii=False) + "\n\n").encode()
write("openai_http", "regression-cut-in-character", bytes([2, 1]) + struct.pack("<H", cafe.index(0xC3) + 1) + cafe)
write("openai_http", "regression-lone-cr", bytes([2, 1]) + struct.pack("<H", 9) + b"data: a\r\r\n\ndata: b\rdata: c\r\r")
write("openai_http", "regression-key-in-code", http_error(400, j({"error": {"message": "m", "code": "sk-fuzz-0123456789abcdef"}})))
write("openai_realtime", "regression-key-echoed", "\n".join(["engine", "S{not json sk-fuzz-realtime-0123456789",
    rt("error", error={"type": "server_error", "code": "sk-fuzz-realtime-0123456789", "message": "m"})]))
write("config_session", "regression-float-round-trip",
      '{"metadata":{"k":[9999999999999999999999999999999999999999999999999999999999999999999999999999999616]}}')
write("deepgram", "regression-result-far-past-the-audio", deepgram(1, 32000, 8000, [j({"type": "Results",
    "channel_index": [0, 1], "duration": 1.0, "start": 1e300, "is_final": True,
    "channel": {"alternatives": [{"transcript": " far "}]}, "metadata": {}})]))
# The target's own false alarm: a lone surrogate in a field RTVI does not read.
write("pipecat_rtvi", "regression-lone-surrogate-in-ignored-key", '{"label":"rtvi-ai","type":"bot-ready","id":"1",'
      '"extra":{"version\\ud800":{"library":"pipecat"}},"data":{"version":"1.0.0"}}')

# A header claiming 272-bit integer samples (the reader shifted by 271 bits).
write("wav_reader", "regression-272-bit-samples", b'RIFF4\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00\x00}\x00\x00\x02\x10\x01data\x00\x00\x00\x02\x10\x00\x00')
# A vocabulary of 9 tokens: the default first-step suppression named the blank, id 220, past it.
write("whisper_tokenizer", "regression-small-vocabulary-suppression", b'\x02\x00{"model":{"type":"BPE","vocab":{"H":0,"ello":1,"\\u0120there":2,".":3,"\\u0120":4}},"added_tokens":[{"id":3,"content":"<|endoftext|>"},{"id":6,"content":"<|startoftranscript|>"},{"id":3,"content":"<|notimestamps|>"},{"id":8,"content":"<|nocaptions|otimestamps|>"},{"id":8,"content":"<|nocaptions|>"}]}\x00{"ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZsuppng_ids":[]}\x00\x06\x00\x07\x00\x00\x00\x01\x00\x02\x00\x03\x00\x05\x00,\x01')

# A frame that is a long JSON string: serde_json's refusal quoted it whole.
write("phone_stream", "regression-long-value-in-refusal", b'\x00"stroa0000000000000000000000000000066sequenceN66000000000000000000000000666666666666666666666666666666666666666661.5666666666660000000000000000000000000000666666666666600000000000000000000000066666666666660000000000000000000000000666000000066666666666660000000000000000"reamSSimSid":"MZX"}')

# --- Dictionaries (libFuzzer -dict): JSON syntax and the keys and values each parser looks for --
DICT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dict")
# Tokens as the bytes they stand for (escaped for libFuzzer when written).
JSON = ["{", "}", "[", "]", ":", ",", '"', "\\", '\\"', "\\u0000", "\\ud800", "true", "false", "null",
        "0", "-1", "1e308", "-0.0", "4294967295", "18446744073709551616", "1.5"]
KEYS = {
    "config_backend": ["provider", "provider_config", "pipeline_type", "stt_tts", "s2s", "stt_provider",
        "tts_provider", "s2s_provider", "stt_config", "tts_config", "s2s_config", "latency_target_ms",
        "max_concurrent_sessions", "audio", "sample_rate", "frame_ms", "input_buffer_ms", "output_buffer_ms",
        "reply_buffer_ms", "realtime_priority", "realtime_threads", "vad", "mode", "start_ms", "stop_ms",
        "turn", "silence_ms", "min_speech_ms", "max_turn_ms", "interruptions", "enabled", "agent_timeout_ms",
        "retry", "max_attempts", "initial_backoff_ms", "max_backoff_ms", "rate_limit", "sessions_per_second",
        "burst", "per_user_sessions_per_minute", "auth", "jwt_hs256_secret", "persistence", "privacy",
        "telemetry", "service_name", "export_interval_ms", "lease_ms", "shared_dir", "local", "pipecat",
        "livekit", "deepgram", "elevenlabs", "openai", "openai-realtime", "whisper", "espeak", "api_key",
        "base_url", "model", "language", "endpointing_ms", "interim_results", "punctuate", "smart_format",
        "keep_alive_ms", "timeout_ms", "voice_id", "model_id", "output_format", "pcm_16000", "voice_settings",
        "stability", "similarity_boost", "style", "use_speaker_boost", "speed", "chunk_length_schedule",
        "voice", "instructions", "turn_detection", "server", "engine", "transcription_model", "prompt",
        "stream", "pipecat_url", "url", "api_secret", "agent_identity", "opus_complexity", "worker",
        "agent_name", "max_jobs", "load_threshold", "ws://", "wss://", "http://", "https://", "127.0.0.1"],
    "config_session": ["user_id", "transport", "host", "webrtc", "connection_url", "room", "conversation_id",
        "connection_token", "auth_token", "admission_wait_ms", "input_sample_rate", "output_sample_rate",
        "input_codec", "output_codec", "pcm", "opus", "opus_complexity", "opus_bitrate", "metadata", "48000",
        "44100", "8000"],
    "jwt": ["alg", "HS256", "none", "typ", "JWT", "sub", "exp", "nbf", "iss", "video", "roomJoin", "room",
        "canPublish", "canSubscribe", ".", "fuzz-hs256-signing-key-7f3a9c"],
    "pipecat_rtvi": ["label", "rtvi-ai", "type", "id", "data", "text", "final", "input_type", "transcription",
        "user-input", "user-transcription", "user-started-speaking", "user-stopped-speaking", "bot-llm-started",
        "bot-llm-text", "bot-llm-stopped", "bot-stopped-speaking", "error", "fatal", "bot-output",
        "segment_id", "spoken", "aggregated_by", "llm-raw-text", "tts-raw-text", "bot-transcription",
        "bot-tts-text", "bot-interrupted"],
    "deepgram": ["type", "Results", "Error", "Metadata", "channel_index", "duration", "start", "is_final",
        "channel", "alternatives", "transcript", "metadata", "description", "message", "variant", "\n"],
    "elevenlabs": ["audio", "isFinal", "alignment", "normalizedAlignment", "chars", "error", "message",
        "code", "\n"],
    "openai_http": ["error", "message", "code", "type", "text", "data:", "data: ", "\n\n", "\r\n",
        "[DONE]", "event:", "transcript.text.delta", "transcript.text.done", "delta", "insufficient_quota",
        "sk-fuzz-0123456789abcdef", "\u00e9"],
    "openai_realtime": ["\nS", "\nA", "\nE", "\nX", "\nR", "\nB", "\nC", "type", "event_id",
        "response", "response_id", "item_id", "delta", "transcript", "status", "status_details", "failed",
        "cancelled", "response.created", "response.output_audio.delta", "response.output_audio_transcript.delta",
        "response.output_text.delta", "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed", "input_audio_buffer.committed", "response.done",
        "error", "code", "message", "response_cancel_not_active", "vb_session_update", "vb_create_1", "resp_1",
        "sk-fuzz-realtime-0123456789"],
    "whisper_tokenizer": ["model", "vocab", "added_tokens", "id", "content", "<|endoftext|>",
        "<|startoftranscript|>", "<|notimestamps|>", "<|nocaptions|>", "<|nospeech|>", "<|en|>",
        "<|transcribe|>", "suppress_ids", "suppress_ids_begin", "\x00", "\u0120"],
    "livekit_signal": ["v=0\r\n", "m=audio", "a=mid:", "a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:sha-256",
        "a=setup:actpass", "a=setup:active", "a=rtpmap:111 opus/48000/2", "a=sendonly", "a=recvonly",
        "a=sendrecv", "a=group:BUNDLE", "a=ssrc:", "a=extmap:", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=sctp-port:5000", "candidate", "sdpMid", "sdpMLineIndex", "usernameFragment", "typ host", "udp", "tcp",
        "TR_agent", "\x21\x12\xa4\x42"],
}
KEYS["pipecat_frame"] = KEYS["pipecat_rtvi"]
KEYS["phone_stream"] = ["event", "connected", "start", "media", "mark", "clear", "stop", "dtmf", "error", "track",
    "inbound", "outbound", "payload", "streamSid", "stream_id", "callSid", "call_control_id", "mediaFormat",
    "media_format", "encoding", "audio/x-mulaw", "audio/x-alaw", "PCMU", "PCMA", "sampleRate", "sample_rate",
    "8000", "digit", "name", "customParameters", "custom_parameters", "\n"]
KEYS["webrtc_offer"] = ["sdp", "type", "offer", "pc_id", "restart_pc", "requestData", "request_data", "candidates",
    "candidate", "sdp_mid", "sdp_mline_index", "v=0", "m=audio", "m=application", "a=mid:", "a=ice-ufrag:",
    "a=ice-pwd:", "a=fingerprint:sha-256 ", "a=setup:actpass", "a=rtpmap:111 opus/48000/2", "a=sendrecv",
    "a=group:BUNDLE ", "a=sctp-port:5000", "UDP/TLS/RTP/SAVPF", "UDP/DTLS/SCTP webrtc-datachannel", "\r\n"]
os.makedirs(DICT, exist_ok=True)


def dict_entry(token):
    """One libFuzzer dictionary line: the token's UTF-8 bytes (Latin-1 for the STUN cookie), with
    backslash, quote and unprintable bytes escaped."""
    data = token.encode("latin-1") if token.startswith("\x21") else token.encode()
    out = ""
    for b in data:
        c = chr(b)
        if c in '\\"':
            out += "\\" + c
        elif 0x20 <= b < 0x7F:
            out += c
        else:
            out += "\\x%02X" % b
    return '"' + out + '"\n'


for target, keys in KEYS.items():
    with open(os.path.join(DICT, f"{target}.dict"), "w") as f:
        base = JSON if target != "livekit_signal" else JSON[:8]
        f.writelines(dict_entry(token) for token in base + keys)
print("seeds written to", ROOT)
