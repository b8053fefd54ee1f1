#!/usr/bin/env python3
"""Synthesises Russian (or English) think-aloud speech with espeak-ng from a
phrase file ("pause|text" per line) and writes the WAV plus a reference JSON
with the text and each word's start/end.

Word boundaries come from espeak-ng itself: the audio of the first k words of
a phrase, trimmed of trailing silence, ends where word k ends. That is exact
up to espeak-ng's prosody at a phrase end (a few tens of ms).

    speech_fixture.py PHRASES.txt OUT.wav OUT.json [--voice ru] [--speed 150]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import wave

RATE = 22050  # espeak-ng's native rate


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phrases")
    ap.add_argument("wav")
    ap.add_argument("json")
    ap.add_argument("--voice", default="ru")
    ap.add_argument("--speed", type=int, default=150)
    a = ap.parse_args()
    out = bytearray()
    words = []
    texts = []
    for line in open(a.phrases, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pause, text = line.split("|", 1)
        out += b"\0\0" * int(float(pause) * RATE)
        base = len(out) // 2
        pcm = synth(text, a.voice, a.speed)
        toks = text.split()
        lead = leading_silence(pcm)
        prev_end = lead
        for k in range(1, len(toks) + 1):
            end = trimmed_end(synth(" ".join(toks[:k]), a.voice, a.speed)) if k < len(toks) else trimmed_end(pcm)
            words.append({"word": toks[k - 1], "start": (base + prev_end) / RATE, "end": (base + end) / RATE})
            prev_end = end
        out += pcm
        texts.append(text)
    out += b"\0\0" * RATE
    with wave.open(a.wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(out))
    json.dump({"text": " ".join(texts), "duration": len(out) / 2 / RATE, "words": words},
              open(a.json, "w", encoding="utf-8"), ensure_ascii=False, indent=1)
    print(f"{a.wav}: {len(out) / 2 / RATE:.1f} s, {len(words)} words", file=sys.stderr)


if __name__ == "__main__":
    main()
