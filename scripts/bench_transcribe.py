#!/usr/bin/env python3
"""Side-by-side transcription benchmark: `lab-analyze transcribe` (whisper.cpp,
GGML converted from the CTranslate2 checkpoint) against faster-whisper running
that same CTranslate2 checkpoint, on the same audio, with the same thread
count, language, greedy decoding (beam 1) and VAD on. Prints wall time,
real-time factor, peak memory, WER against the known text, and the word
start-time error against the TTS word boundaries, then the ratios.

Run by scripts/bench-transcribe, which prepares the audio and the venv.
"""
import json
import os
import re
import subprocess
import sys
import time

LAB, CT2, AUDIO, REF, THREADS, FW_PY = sys.argv[1:7]
BEAM = os.environ.get("BENCH_BEAM", "1")


def norm(text):
    text = text.lower().replace("ё", "е")
    return re.findall(r"[\w-]+", text)


def align(ref, hyp):
    """Levenshtein alignment of word lists; returns (distance, [(ref_i, hyp_j)] of equal pairs)."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1] and d[i][j] == d[i - 1][j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j - 1] + 1:
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return d[n][m], pairs[::-1]


def timed(cmd):
    t = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    wall = time.time() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    return p.stdout, wall, rss_kib / 1024


FW_SCRIPT = r"""
import json, sys
from faster_whisper import WhisperModel
model_dir, audio, threads, beam = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = WhisperModel(model_dir, device="cpu", compute_type="default", cpu_threads=threads, num_workers=1)
segs, info = m.transcribe(audio, language="ru", beam_size=beam, best_of=5, vad_filter=True,
                          word_timestamps=True, condition_on_previous_text=False)
words = [{"word": w.word.strip(), "start": w.start, "end": w.end} for s in segs for w in (s.words or [])]
print(json.dumps({"words": words, "compute_type": "default"}))
"""


def main():
    ref = json.load(open(REF, encoding="utf-8"))
    ref_words = norm(ref["text"])
    ref_times = [w["start"] for w in ref["words"]]
    duration = ref["duration"]
    rows = []
    out, wall, rss = timed([LAB, "transcribe", AUDIO, "--language", "ru", "--format", "json", "--threads", THREADS, "--beam", BEAM])
    ours = [(w["word"], w["start"]) for s in json.loads(out)["segments"] for w in s["words"]]
    rows.append(("lab-analyze (whisper.cpp)", ours, wall, rss))
    out, wall, rss = timed([FW_PY, "-c", FW_SCRIPT, CT2, AUDIO, THREADS, BEAM])
    fw = [(w["word"], w["start"]) for w in json.loads(out)["words"]]
    rows.append(("faster-whisper (CTranslate2)", fw, wall, rss))

    print(f"audio: {duration:.1f} s of Russian espeak-ng think-aloud, {len(ref_words)} words; threads {THREADS}; beam {BEAM}; VAD on")
    print(f"{'contender':30} {'wall s':>7} {'RTF':>6} {'peak MiB':>9} {'WER':>6} {'word start err ms (median/p90)':>32}")
    results = []
    for name, words, wall, rss in rows:
        hyp_tokens, hyp_times = [], []
        for text, start in words:
            for t in norm(text):
                hyp_tokens.append(t)
                hyp_times.append(start)
        dist, pairs = align(ref_words, hyp_tokens)
        wer = dist / max(1, len(ref_words))
        # Only words that are single tokens in both keep a meaningful start time.
        errs = sorted(abs(hyp_times[j] - ref_times[i]) * 1000 for i, j in pairs if i < len(ref_times))
        med = errs[len(errs) // 2] if errs else float("nan")
        p90 = errs[int(len(errs) * 0.9)] if errs else float("nan")
        print(f"{name:30} {wall:7.1f} {wall / duration:6.3f} {rss:9.0f} {wer:6.3f} {med:15.0f} / {p90:.0f}")
        results.append((wall, rss, wer))
    (w0, r0, e0), (w1, r1, e1) = results
    print(f"ratios lab-analyze/faster-whisper: wall {w0 / w1:.2f}, peak memory {r0 / r1:.2f}, WER difference {e0 - e1:+.3f}")
    print("goal: wall ratio <= 1.0 at WER no worse than faster-whisper + 0.02")


if __name__ == "__main__":
    main()
