#!/usr/bin/env python3
"""Synthesises Russian (or English) think-aloud speech with espeak-ng from a
phrase file ("pause|text" per line) and writes the WAV plus a reference JSON
with the text and each word's start/end.

Word boundaries come from espeak-ng itself: the audio of the first k words of
a phrase, trimmed of trailing silence, ends where word k ends. That is exact
up to espeak-ng's prosody at a phrase end (a few tens of ms).

Pauses: `file` keeps the file's pauses; `short` draws 0.3-1 s, `mixed`
0.3-4 s, `long` 0.5-4 s with every fourth pause 8-20 s (for word times after
long silences); draws are seeded by --seed, so a clip is reproducible.

Room conditions (--room) only add to or filter the signal, never shift it,
so the word boundaries stay exact: `clean`; `pink20`/`pink10` add pink noise
(seeded) at 20/10 dB SNR against the speech level (RMS over the words);
`reverb` is sox's `reverb` of a small room (pre-delay 0: the dry signal is
not delayed; the tail past the clip's end is cut); `tel8k` is a 300-3400 Hz
band (sox `sinc`, linear phase with its delay compensated) at 8 kHz.

    speech_fixture.py PHRASES.txt OUT.wav OUT.json [--voice ru] [--speed 150]
        [--pauses file|short|mixed|long] [--room clean|pink20|pink10|reverb|tel8k]
        [--phrases N] [--seed S]

Plain python3 works for `--room clean`; the others need numpy (the bench
runs this with .venv-bench's python, which has it through faster-whisper).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import wave

RATE = 22050  # espeak-ng's native rate
ROOMS = ["clean", "pink20", "pink10", "reverb", "tel8k"]
PAUSES = ["file", "short", "mixed", "long"]


def synth(text, voice, speed):
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name, text], check=True)
        with wave.open(f.name) as w:
            assert w.getframerate() == RATE and w.getsampwidth() == 2 and w.getnchannels() == 1
            return w.readframes(w.getnframes())


def samples(pcm):
    return [int.from_bytes(pcm[i:i + 2], "little", signed=True) for i in range(0, len(pcm), 2)]


def trimmed_end(pcm, threshold=300):
    s = samples(pcm)
    end = len(s)
    while end > 0 and abs(s[end - 1]) < threshold:
        end -= 1
    return end


def leading_silence(pcm, threshold=300):
    s = samples(pcm)
    i = 0
    while i < len(s) and abs(s[i]) < threshold:
        i += 1
    return i


def draw_pause(scheme, written, k, rng):
    if scheme == "file":
        return written
    if scheme == "short":
        return rng.uniform(0.3, 1.0)
    if scheme == "mixed":
        return rng.uniform(0.3, 4.0)
    # long: every fourth pause 8-20 s, the rest 0.5-4 s
    return rng.uniform(8.0, 20.0) if k % 4 == 3 else rng.uniform(0.5, 4.0)


def write_wav(path, pcm, rate=RATE):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(pcm))


def pink(n, rng_seed):
    import numpy as np
    rng = np.random.default_rng(rng_seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / np.sqrt(np.mean(x * x))


def apply_room(room, pcm, words, wav_path, seed):
    """Writes `pcm` (22.05 kHz int16) to wav_path under room condition `room`."""
    if room == "clean":
        write_wav(wav_path, pcm)
        return RATE
    import numpy as np
    x = np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float64)
    if room in ("pink20", "pink10"):
        snr = 20.0 if room == "pink20" else 10.0
        speech = np.concatenate([x[int(w["start"] * RATE):int(w["end"] * RATE)] for w in words])
        level = np.sqrt(np.mean(speech * speech))
        y = x + pink(len(x), seed) * level / 10 ** (snr / 20)
        peak = np.max(np.abs(y))
        if peak > 32000:
            y *= 32000 / peak
        write_wav(wav_path, np.round(y).astype("<i2").tobytes())
        return RATE
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.wav")
        write_wav(src, pcm)
        if room == "reverb":
            dst = os.path.join(tmp, "out.wav")
            # reverberance 40 %, HF damping 50 %, room scale 20 % (small), stereo depth 100, pre-delay 0 ms
            subprocess.run(["sox", src, dst, "reverb", "40", "50", "20", "100", "0", "norm", "-1"], check=True)
            with wave.open(dst) as w:
                y = w.readframes(w.getnframes())
            write_wav(wav_path, y[:len(pcm)])
            return RATE
        if room == "tel8k":
            subprocess.run(["sox", src, "-r", "8000", wav_path, "sinc", "300-3400"], check=True)
            return 8000
    raise SystemExit(f"unknown room {room}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phrases")
    ap.add_argument("wav")
    ap.add_argument("json")
    ap.add_argument("--voice", default="ru")
    ap.add_argument("--speed", type=int, default=150)
    ap.add_argument("--pauses", choices=PAUSES, default="file")
    ap.add_argument("--room", choices=ROOMS, default="clean")
    ap.add_argument("--phrases", dest="limit", type=int, default=0, help="only the first N phrases")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = bytearray()
    words = []
    texts = []
    pauses = []
    lines = [ln.strip() for ln in open(a.phrases, encoding="utf-8")]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if a.limit:
        lines = lines[:a.limit]
    for k, line in enumerate(lines):
        pause, text = line.split("|", 1)
        pause = draw_pause(a.pauses, float(pause), k, rng)
        pauses.append(round(pause, 3))
        out += b"\0\0" * int(pause * RATE)
        base = len(out) // 2
        pcm = synth(text, a.voice, a.speed)
        toks = text.split()
        lead = leading_silence(pcm)
        prev_end = lead
        for j in range(1, len(toks) + 1):
            end = trimmed_end(synth(" ".join(toks[:j]), a.voice, a.speed)) if j < len(toks) else trimmed_end(pcm)
            words.append({"word": toks[j - 1], "start": (base + prev_end) / RATE, "end": (base + end) / RATE})
            prev_end = end
        out += pcm
        texts.append(text)
    out += b"\0\0" * RATE
    rate = apply_room(a.room, out, words, a.wav, a.seed)
    duration = len(out) / 2 / RATE
    json.dump({"text": " ".join(texts), "duration": duration, "words": words, "voice": a.voice,
               "speed": a.speed, "pauses": pauses, "room": a.room, "rate": rate,
               "source": os.path.basename(a.phrases)},
              open(a.json, "w", encoding="utf-8"), ensure_ascii=False, indent=1)
    print(f"{a.wav}: {duration:.1f} s, {len(words)} words, {a.voice} {a.speed} wpm, "
          f"pauses {a.pauses} (max {max(pauses):.1f} s), {a.room}", file=sys.stderr)


if __name__ == "__main__":
    main()
