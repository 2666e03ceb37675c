"""Fixed inputs and ONNX Runtime (Python, CPU EP, 1 thread) reference outputs for the comparison.

Writes raw little-endian f32 files into data/ (shapes in data/manifest.json):
  silero_streams.f32  [S, T*512]  audio of S=32 streams (speech, silence, noise, gains)
  silero_ref_b1.f32   [S, T]      probabilities, each stream alone (batch 1), state + context carried
  silero_ref_b32.f32  [T, S]      probabilities, all streams in one batch per window
  st_features.f32     [N, 80, 800] Smart Turn features (pipecat's own numpy feature code)
  st_ref.f32          [N]          Smart Turn probabilities, batch 1 each
"""
import json, os, sys, wave
import numpy as np
import onnxruntime as ort
from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

SITE = os.path.dirname(os.path.dirname(ort.__file__))
SILERO = os.path.join(SITE, "pipecat/audio/vad/data/silero_vad.onnx")
SMART = os.path.join(SITE, "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx")
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
WIN, CTX, S, T = 512, 64, 32, 320          # 320 windows = 10.24 s per stream

def read_wav(p):
    with wave.open(p) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0

speech = [read_wav(os.path.join(D, f"speech{i}.wav")) for i in range(4)]

def opts():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so

# ---- Silero streams ----
rng = np.random.default_rng(1234)
n = T * WIN
streams = np.zeros((S, n), np.float32)
for k in range(S):
    pos = 0 if k == 0 else int(rng.integers(0, 16000))
    sig = np.zeros(n, np.float32)
    parts = [0, 1, 2, 3] if k == 0 else list(rng.permutation(4))
    for j, idx in enumerate(parts):
        pos += 8000 if k == 0 else int(rng.integers(2000, 16000))   # silence gap
        if pos >= n:
            break
        seg = speech[idx] * (1.0 if k == 0 else float(rng.uniform(0.2, 1.5)))
        end = min(pos + len(seg), n)
        sig[pos:end] += seg[: end - pos]
        pos = end
        if pos >= n:
            break
    noise_amp = 0.003 if k == 0 else float(rng.choice([0.0, 0.001, 0.01, 0.05]))
    sig += (noise_amp * rng.standard_normal(n)).astype(np.float32)
    if k == 0:  # a burst of loud white noise at the end
        sig[-16000:] += (0.2 * rng.standard_normal(16000)).astype(np.float32)
    streams[k] = np.clip(sig, -1, 1)

sil = ort.InferenceSession(SILERO, sess_options=opts(), providers=["CPUExecutionProvider"])
sr = np.array(16000, dtype=np.int64)

ref_b1 = np.zeros((S, T), np.float32)
for k in range(S):
    state = np.zeros((2, 1, 128), np.float32)
    ctx = np.zeros(CTX, np.float32)
    for t in range(T):
        w = streams[k, t * WIN:(t + 1) * WIN]
        x = np.concatenate([ctx, w])[None, :]
        out, state = sil.run(["output", "stateN"], {"input": x, "state": state, "sr": sr})
        ref_b1[k, t] = out[0, 0]
        ctx = w[-CTX:]

ref_b32 = np.zeros((T, S), np.float32)
state = np.zeros((2, S, 128), np.float32)
ctx = np.zeros((S, CTX), np.float32)
for t in range(T):
    w = streams[:, t * WIN:(t + 1) * WIN]
    x = np.concatenate([ctx, w], axis=1)
    out, state = sil.run(["output", "stateN"], {"input": x, "state": state, "sr": sr})
    ref_b32[t] = out[:, 0]
    ctx = w[:, -CTX:]
print("silero: batch-1 vs batch-32 (ort itself) max abs diff", float(np.abs(ref_b1.T - ref_b32).max()))
print("silero stream 0 probs >0.5:", int((ref_b1[0] > 0.5).sum()), "of", T, " min/max", ref_b1.min(), ref_b1.max())

# ---- Smart Turn ----
def prep(a):
    m = 8 * 16000
    a = a[-m:] if len(a) > m else np.pad(a, (m - len(a), 0))
    return compute_whisper_log_mel_features(a.astype(np.float32), do_normalize=True).astype(np.float32)

clips = [
    speech[0],                                              # complete question
    speech[1][: len(speech[1]) // 2],                       # cut mid-sentence
    speech[2],                                              # trailing "not sure"
    speech[3],
    np.concatenate(speech),                                 # > 8 s: truncated to last 8 s
    np.concatenate([speech[0], np.zeros(16000, np.float32)]),   # speech then 1 s silence
    streams[0][: 5 * 16000],                                # noisy stream 0 (5 s)
    0.01 * rng.standard_normal(3 * 16000).astype(np.float32),   # noise only
]
feats = np.stack([prep(c) for c in clips])
# plus two random (not realistic) tensors in the features' range
feats = np.concatenate([feats, rng.uniform(-1.0, 1.5, (2, 80, 800)).astype(np.float32)])
st = ort.InferenceSession(SMART, sess_options=opts(), providers=["CPUExecutionProvider"])
st_ref = np.array([st.run(["logits"], {"input_features": feats[i:i + 1]})[0][0, 0] for i in range(len(feats))], np.float32)
st_b = st.run(["logits"], {"input_features": feats})[0][:, 0]
print("smart turn probs:", np.round(st_ref, 4), " batch-N vs batch-1 (ort):", float(np.abs(st_b - st_ref).max()))

streams.astype("<f4").tofile(os.path.join(D, "silero_streams.f32"))
ref_b1.astype("<f4").tofile(os.path.join(D, "silero_ref_b1.f32"))
ref_b32.astype("<f4").tofile(os.path.join(D, "silero_ref_b32.f32"))
feats.astype("<f4").tofile(os.path.join(D, "st_features.f32"))
st_ref.astype("<f4").tofile(os.path.join(D, "st_ref.f32"))
json.dump({"silero_streams": [S, n], "silero_ref_b1": [S, T], "silero_ref_b32": [T, S],
           "st_features": [len(feats), 80, 800], "st_ref": [len(feats)],
           "onnxruntime": ort.__version__}, open(os.path.join(D, "manifest.json"), "w"), indent=1)
