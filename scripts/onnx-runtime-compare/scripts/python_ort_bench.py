"""Cross-check: the same timings through Python's onnxruntime (1 intra-op thread)."""
import os, time
import numpy as np
import onnxruntime as ort

SITE = os.path.dirname(os.path.dirname(ort.__file__))
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
streams = np.fromfile(os.path.join(D, "silero_streams.f32"), "<f4").reshape(32, -1)
feats = np.fromfile(os.path.join(D, "st_features.f32"), "<f4").reshape(-1, 80, 800)
t = time.perf_counter()
sil = ort.InferenceSession(os.path.join(SITE, "pipecat/audio/vad/data/silero_vad.onnx"), so, providers=["CPUExecutionProvider"])
print(f"silero load {1e3*(time.perf_counter()-t):.1f} ms")
sr = np.array(16000, np.int64)
for b, runs in [(1, 1000), (32, 320)]:
    state = np.zeros((2, b, 128), np.float32)
    ctx = np.zeros((b, 64), np.float32)
    ts = []
    for i in range(50 + runs):
        k = i % 320
        w = streams[:b, k * 512:(k + 1) * 512]
        s = time.perf_counter()
        x = np.concatenate([ctx, w], axis=1)
        out, state = sil.run(["output", "stateN"], {"input": x, "state": state, "sr": sr})
        ctx = w[:, -64:]
        if i >= 50:
            ts.append(time.perf_counter() - s)
    m = np.median(ts) * 1e6
    print(f"python-ort silero b{b}: median {m:.1f} us/call, {m/b:.2f} us/window, loadavg {open('/proc/loadavg').read().split()[:3]}")
t = time.perf_counter()
st = ort.InferenceSession(os.path.join(SITE, "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"), so, providers=["CPUExecutionProvider"])
print(f"smart turn load {1e3*(time.perf_counter()-t):.1f} ms")
ts = []
for i in range(3 + 40):
    s = time.perf_counter()
    st.run(["logits"], {"input_features": feats[i % len(feats)][None]})
    if i >= 3:
        ts.append(time.perf_counter() - s)
print(f"python-ort smart_turn b1: median {np.median(ts)*1e6:.0f} us/call, loadavg {open('/proc/loadavg').read().split()[:3]}")
