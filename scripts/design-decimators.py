#!/usr/bin/env python3
"""Designs the taps of src/dsp/decimate.rs (run once by hand; needs numpy and scipy).

Equiripple (Parks-McClellan) low-pass filters for exact 3:1 and 2:1 decimation to an output
rate fs_out: passband 0-0.40625 fs_out (6.5 kHz at 16 kHz), stopband from 0.5 fs_out (8 kHz),
so that nothing folds into the output band. The stopband weight is the one, of 80 tried, that
gives the deepest stopband with a passband ripple of at most +-0.25 dB after rounding to Q14.
Prints the Rust tables and the measured response; the unit tests measure it again in Rust.

    python3 -m venv /tmp/fir && /tmp/fir/bin/pip install numpy scipy
    /tmp/fir/bin/python scripts/design-decimators.py
"""
import numpy as np
import scipy.signal as signal

Q = 14


def response(taps, fs):
    w, h = signal.freqz(taps / (1 << Q), worN=1 << 17, fs=fs)
    db = 20 * np.log10(np.abs(h) + 1e-20)
    return db[w <= 6500].max(), db[w <= 6500].min(), db[w >= 8000].max()


for factor, n in [(3, 96), (2, 64)]:
    fs = 16000 * factor
    best = None
    for weight in np.geomspace(10, 3000, 80):
        try:
            h = signal.remez(n, [0, 6500, 8000, fs / 2], [1, 0], weight=[1, weight], fs=fs,
                             maxiter=2000)
        except ValueError:
            continue
        taps = np.round(h * (1 << Q)).astype(int)
        top, bottom, stop = response(taps, fs)
        if max(top, -bottom) <= 0.25 and (best is None or stop < best[0]):
            best = (stop, top, bottom, weight, taps)
    stop, top, bottom, weight, taps = best
    print(f"// {factor}:1, {n} taps, Q{Q}: passband {bottom:+.3f}/{top:+.3f} dB, "
          f"stopband {stop:.2f} dB (weight {weight:.1f})")
    print(f"const TAPS_{factor}: [i16; {n}] = [{', '.join(str(int(t)) for t in taps)}];")
