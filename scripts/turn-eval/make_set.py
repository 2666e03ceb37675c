"""Generates the labeled turn-taking set: eSpeak NG speech, 16 kHz mono WAV, and a JSON manifest.

Categories (each case is one user track, plus an agent track where the agent is speaking):
  complete      a finished sentence, then silence            truth: speech_end
  pause         a sentence with a 0.6 / 0.9 / 1.2 s pause at a syntactically unfinished point
                ("I would like to ... order a large pizza")  truth: pause_start/pause_end, speech_end
                (spoken as one utterance with an SSML break, the break then made exactly as long)
  trailing      a sentence that trails off ("so I was thinking that maybe we could, um")
  noise         while the agent speaks: a cough-like filtered noise burst or a door knock
  backchannel   while the agent speaks: "mm-hmm", "yeah", "okay", "right", ...
  interruption  while the agent speaks: "wait", "stop", "actually, no, I meant Tuesday", ...
Every category but trailing is generated again with 15 dB background noise (pink noise, or
babble mixed from ten eSpeak talkers); those cases have "noisy": true.

The agent's reply (its own track, <id>.agent.wav) plays from t = 0 to agent_end; the user track
holds only the user (as after echo cancellation). Times in the manifest are seconds of audio.

Deterministic for a given --seed. --unseen makes the held-out variant: other voices, other
sentences, another seed. Output: target/turn-eval/set/ (or set-unseen/), manifest.json inside.

Run (with the project venv, which has numpy and soxr):
  /root/.cache/voicebackend/venv/bin/python scripts/turn-eval/make_set.py [--unseen] [--out DIR]
"""

import argparse
import json
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soxr

RATE = 16000
LEAD_S = 0.5  # silence before the user speaks
TAIL_S = 4.0  # silence after: longer than Pipecat's 3 s fallback plus its 0.2 s VAD stop
SPEECH_RMS = 0.1  # speech level (about -20 dBFS)
SNR_DB = 15.0

SEEN = {
    "voices": ["en-us", "en-gb", "en+f3", "en+m7"],
    "speeds": [150, 170, 190],
    "complete": [
        "I would like to order a large pizza with mushrooms.",
        "Can you tell me what time the pharmacy closes today?",
        "My account number is four five six seven.",
        "Please book a table for two at eight o'clock.",
        "The package never arrived at my house.",
        "I need to change my flight to Friday morning.",
        "What is the weather going to be like tomorrow?",
        "Thanks, that is all I needed.",
    ],
    "pause": [
        ("I would like to", "order a large pizza with extra cheese."),
        ("Can you send the invoice to", "my office address instead?"),
        ("My daughter's birthday is on the", "twenty third of March."),
        ("I was wondering if you could", "move my appointment to Thursday."),
        ("The thing I am looking for is", "a blue jacket in medium."),
    ],
    "trailing": [
        "So I was thinking that maybe we could, um",
        "And then, well, I don't know, maybe",
        "I guess it depends on whether the",
        "Yeah so the reason I called is because",
    ],
    "backchannel": ["mm-hmm", "yeah", "okay", "right", "uh-huh", "I see"],
    "interruption": [
        "wait",
        "stop",
        "actually, no, I meant Tuesday",
        "hold on, that is not what I asked",
    ],
    "agent": "Sure, let me check the schedule for you. We have openings on Monday, Wednesday "
    "and Friday afternoons, and the earliest one is at two thirty with doctor Miller.",
}

UNSEEN = {
    "voices": ["en-gb-scotland", "en-029", "en+f2", "en-gb-x-rp", "en+m3"],
    "speeds": [140, 160, 185],
    "complete": [
        "I lost my card and I need a new one.",
        "Could you read me the last three transactions?",
        "We will arrive at the hotel around midnight.",
        "Set an alarm for six fifteen tomorrow.",
        "The heating in the bedroom is not working.",
        "How much does the premium plan cost per month?",
    ],
    "pause": [
        ("I want to transfer money from", "my savings to my checking account."),
        ("Could you remind me to", "call my mother on Sunday?"),
        ("The best time to reach me is", "after five in the evening."),
        ("We are looking for a hotel near", "the train station in Lyon."),
        ("My internet has been", "dropping out every evening this week."),
    ],
    "trailing": [
        "Well, it's just that I'm not sure if",
        "And the other thing was, hmm",
        "I suppose we could try the, uh",
    ],
    "backchannel": ["mm-hmm", "yes", "sure", "got it", "uh-huh", "alright"],
    "interruption": [
        "no no no",
        "excuse me",
        "sorry, I meant the other account",
        "hang on, can you repeat that",
    ],
    "agent": "Of course. Your balance is four hundred and twelve dollars, and the next payment "
    "of sixty dollars is due on the fifteenth, unless you would like to change it.",
}


def espeak(text, voice, speed, ssml=False):
    """Speaks `text` and returns float32 mono at 16 kHz, trimmed of leading/trailing silence."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        flags = ["-m"] if ssml else []
        subprocess.run(
            ["espeak-ng", *flags, "-v", voice, "-s", str(speed), "-w", f.name, text], check=True
        )
        with wave.open(f.name) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, RATE)
    return trim(audio)


def trim(audio):
    """Cuts the silence before the first and after the last 10 ms block above -40 dB of peak."""
    block = RATE // 100
    n = len(audio) // block
    rms = np.sqrt(np.mean(audio[: n * block].reshape(n, block) ** 2, axis=1))
    active = np.nonzero(rms > np.max(rms) * 0.01)[0]
    return audio[active[0] * block : (active[-1] + 1) * block]


def with_pause(head, tail, pause, voice, speed):
    """One utterance with an SSML break between `head` and `tail` (so the head keeps the
    prosody of an unfinished sentence, not of a sentence on its own), the break's silence then
    set to exactly `pause` seconds. Returns (audio, pause start in seconds)."""
    ms = int(pause * 1000)
    audio = at_level(espeak(f'{head} <break time="{ms}ms"/> {tail}', voice, speed, ssml=True))
    block = RATE // 100
    n = len(audio) // block
    rms = np.sqrt(np.mean(audio[: n * block].reshape(n, block) ** 2, axis=1))
    quiet = np.append(rms < np.max(rms) * 0.01, False)
    best, start = (0, 0), None
    for i, q in enumerate(quiet):  # the longest quiet run is the break
        if q and start is None:
            start = i
        elif not q and start is not None:
            best, start = max(best, (i - start, start)), None
    length, first = best
    head_audio, tail_audio = audio[: first * block], audio[(first + length) * block :]
    gap = np.zeros(int(pause * RATE))
    return np.concatenate([head_audio, gap, tail_audio]), len(head_audio) / RATE


def at_level(audio, rms=SPEECH_RMS):
    """Scales `audio` so that its active part has the given RMS."""
    block = RATE // 100
    n = len(audio) // block
    blocks = np.sqrt(np.mean(audio[: n * block].reshape(n, block) ** 2, axis=1))
    active = blocks[blocks > np.max(blocks) * 0.05]
    return audio * (rms / np.sqrt(np.mean(active**2)))


def band(noise, lo, hi):
    """Band-pass by FFT masking (no scipy in the venv)."""
    spec = np.fft.rfft(noise)
    f = np.fft.rfftfreq(len(noise), 1 / RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, len(noise))


def cough(rng):
    """Two bursts of band-limited noise with a fast attack and an exponential decay."""
    parts = []
    for dur in (rng.uniform(0.12, 0.2), rng.uniform(0.08, 0.14)):
        n = int(dur * RATE)
        t = np.arange(n) / RATE
        env = (1 - np.exp(-t / 0.008)) * np.exp(-t / (dur / 3))
        parts.append(band(rng.standard_normal(n), 250, rng.uniform(1800, 3500)) * env)
        parts.append(np.zeros(int(rng.uniform(0.06, 0.12) * RATE)))
    return at_level(np.concatenate(parts), SPEECH_RMS * 1.5)


def knock(rng):
    """Three or four knocks: damped low resonances plus a click, about 0.15 s apart."""
    out = []
    for _ in range(rng.integers(3, 5)):
        n = int(0.12 * RATE)
        t = np.arange(n) / RATE
        tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (170, 410, 900))
        click = band(rng.standard_normal(n), 1000, 5000) * np.exp(-t / 0.002)
        out.append((tone * np.exp(-t / 0.025) + 2 * click))
        out.append(np.zeros(int(rng.uniform(0.03, 0.06) * RATE)))
    audio = np.concatenate(out)
    return audio / np.max(np.abs(audio)) * 0.5


def pink(n, rng):
    """Pink noise (1/f power) by spectral shaping."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    audio = np.fft.irfft(spec / np.sqrt(f), n)
    return audio / np.sqrt(np.mean(audio**2))


BABBLE_VOICES = ["en-us", "en+f4", "en-gb-x-rp", "en+m2", "en+f1", "en+m5", "en-gb", "en+f5",
                 "en+m1", "en-us+f2"]


def babble(n, rng, pool):
    """Ten eSpeak talkers at once, looped: a canteen's diffuse speech noise, unit RMS."""
    mix = np.zeros(n)
    for voice in BABBLE_VOICES:
        text = " ".join(rng.permutation(pool))
        talker = at_level(espeak(text, voice, int(rng.integers(150, 200))))
        talker = np.tile(talker, n // len(talker) + 2)
        start = int(rng.integers(0, len(talker) - n))
        mix += talker[start : start + n]
    return mix / np.sqrt(np.mean(mix**2))


def write_wav(path, audio):
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


class Builder:
    """Collects cases; voices and speeds rotate. Sounds and timings come from one seeded rng,
    background noise from another, so that changing the noise leaves the clean cases alone."""

    def __init__(self, spec, seed, out):
        self.spec, self.out = spec, out
        self.rng = np.random.default_rng(seed)
        self.noise_rng = np.random.default_rng(seed + 1)
        self.cases = []
        self.turn = 0
        self.agent = None
        self._babble = None
        self.noisy = 0

    def voice(self):
        self.turn += 1
        voices, speeds = self.spec["voices"], self.spec["speeds"]
        return voices[self.turn % len(voices)], speeds[(self.turn // len(voices)) % len(speeds)]

    def agent_track(self):
        if self.agent is None:
            self.agent = at_level(espeak(self.spec["agent"], "en-us", 175), SPEECH_RMS * 0.8)
        return self.agent

    def add(self, case, user, agent=None):
        """Pads `user` into a case (lead-in, tail), adds background noise, writes the WAVs."""
        n = max(int((LEAD_S + TAIL_S) * RATE) + len(user), 0 if agent is None else len(agent))
        track = np.zeros(n)
        start = int(LEAD_S * RATE)
        track[start : start + len(user)] = user
        case["duration_s"] = round(n / RATE, 3)
        for key in ("speech_start", "speech_end", "pause_start", "pause_end"):
            if key in case:
                case[key] = round(case[key] + LEAD_S, 3)
        if agent is not None:
            case["agent_end"] = round(len(agent) / RATE, 3)
            write_wav(self.out / f"{case['id']}.agent.wav", agent)
            case["agent_wav"] = f"{case['id']}.agent.wav"
        case.setdefault("noisy", False)
        self.cases.append(case)
        write_wav(self.out / f"{case['id']}.wav", track)
        if case["category"] != "trailing":
            self.add_noisy(dict(case), track)

    def add_noisy(self, case, clean):
        """The same case with pink or babble noise at 15 dB below the speech."""
        self.noisy += 1
        kind = "babble" if self.noisy % 2 else "pink"
        n = len(clean)
        if kind == "pink":
            noise = pink(n, self.noise_rng)
        else:
            start = int(self.noise_rng.integers(0, len(self.babble()) - n))
            noise = self.babble()[start : start + n]
        case.update(id=case["id"] + "-noisy", noisy=True, background=kind, snr_db=SNR_DB)
        write_wav(self.out / f"{case['id']}.wav", clean + noise * SPEECH_RMS / 10 ** (SNR_DB / 20))
        self.cases.append(case)

    def babble(self):
        """One minute of babble, made once; cases take slices of it."""
        if self._babble is None:
            s = self.spec
            pool = s["complete"] + [" ".join(p) for p in s["pause"]]
            self._babble = babble(60 * RATE, self.noise_rng, pool)
        return self._babble

    def build(self):
        s, rng = self.spec, self.rng
        for i, text in enumerate(s["complete"]):
            voice, speed = self.voice()
            audio = at_level(espeak(text, voice, speed))
            self.add(
                dict(id=f"complete-{i}", category="complete", text=text, voice=voice,
                     speed=speed, speech_start=0.0, speech_end=len(audio) / RATE),
                audio,
            )
        for i, (head, tail) in enumerate(s["pause"]):
            voice, speed = self.voice()
            for pause in (0.6, 0.9, 1.2):
                audio, at = with_pause(head, tail, pause, voice, speed)
                self.add(
                    dict(id=f"pause-{i}-{int(pause * 1000)}", category="pause",
                         text=f"{head} ... {tail}", voice=voice, speed=speed, pause_s=pause,
                         speech_start=0.0, pause_start=at, pause_end=at + pause,
                         speech_end=len(audio) / RATE),
                    audio,
                )
        for i, text in enumerate(s["trailing"]):
            voice, speed = self.voice()
            audio = at_level(espeak(text, voice, speed - 20))
            self.add(
                dict(id=f"trailing-{i}", category="trailing", text=text, voice=voice,
                     speed=speed - 20, speech_start=0.0, speech_end=len(audio) / RATE),
                audio,
            )
        # While the agent speaks: the user's sound starts 1.0-1.6 s into the agent's reply.
        sounds = [("noise", "cough", cough(rng)) for _ in range(3)]
        sounds += [("noise", "door knock", knock(rng)) for _ in range(2)]
        for text in s["backchannel"] + s["interruption"]:
            voice, speed = self.voice()
            kind = "backchannel" if text in s["backchannel"] else "interruption"
            sounds.append((kind, text, at_level(espeak(text, voice, speed))))
        agent = self.agent_track()
        for i, (kind, text, audio) in enumerate(sounds):
            onset = rng.uniform(1.0, 1.6)
            user = np.concatenate([np.zeros(int((onset - LEAD_S) * RATE)), audio])
            self.add(
                dict(id=f"{kind}-{i}", category=kind, text=text, agent_speaking=True,
                     speech_start=onset - LEAD_S, speech_end=onset - LEAD_S + len(audio) / RATE),
                user,
                agent,
            )
        return self.cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unseen", action="store_true", help="held-out voices and sentences")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", help="output directory (default target/turn-eval/set[-unseen])")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2]
    out = Path(args.out or root / "target/turn-eval" / ("set-unseen" if args.unseen else "set"))
    out.mkdir(parents=True, exist_ok=True)
    seed = args.seed + (1000 if args.unseen else 0)
    cases = Builder(UNSEEN if args.unseen else SEEN, seed, out).build()
    manifest = {"rate": RATE, "seed": seed, "unseen": args.unseen, "cases": cases}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    counts = {}
    for c in cases:
        key = c["category"] + (" (noisy)" if c["noisy"] else "")
        counts[key] = counts.get(key, 0) + 1
    print(f"{len(cases)} cases in {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
