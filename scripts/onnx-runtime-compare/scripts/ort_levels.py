"""How much ONNX Runtime's own graph optimizations change Smart Turn's output (a QDQ-quantized
model: with optimizations ORT fuses Q/DQ pairs into integer kernels; without, it computes the
Q/DQ float simulation the ONNX spec defines). Same features as st_features.f32."""
import os
import numpy as np
import onnxruntime as ort

SITE = os.path.dirname(os.path.dirname(ort.__file__))
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
feats = np.fromfile(os.path.join(D, "st_features.f32"), "<f4").reshape(-1, 80, 800)
ref = np.fromfile(os.path.join(D, "st_ref.f32"), "<f4")
out = {}
for name, lvl in [("disable_all", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                  ("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
                  ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
                  ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = lvl
    s = ort.InferenceSession(os.path.join(SITE, "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"), so, providers=["CPUExecutionProvider"])
    p = np.array([s.run(None, {"input_features": feats[i:i+1]})[0][0, 0] for i in range(len(feats))], np.float32)
    out[name] = p
    print(f"ort {name:12s} probs {np.round(p, 4)}  max|diff| vs ORT_ENABLE_ALL ref {np.abs(p - ref).max():.3e}")
out["disable_all"].astype("<f4").tofile(os.path.join(D, "st_ref_noopt.f32"))
