#!/usr/bin/env python3
"""Side-by-side transcription benchmark: `lab-analyze transcribe` (whisper.cpp,
GGML converted from the CTranslate2 checkpoint) against faster-whisper running
that same CTranslate2 checkpoint, on the same clips, with the same thread
count, language, beam width (BENCH_BEAM, default 5: both tools' default) and
VAD on. Per clip and pooled over all clips: wall time, real-time factor, peak
memory, WER against the known text, and the word start-time error against
the TTS word boundaries; then the ratios. One clip of espeak-ng Russian is a
noisy judge (WER swings by +-0.1 between clips), hence several.

    bench_transcribe.py LAB CT2_DIR THREADS FW_PYTHON CLIP.wav:CLIP.json...

Run by scripts/bench-transcribe, which prepares the clips and the venv.
"""
import json
import os
import re
import subprocess
import sys
import time

BEAM = os.environ.get("BENCH_BEAM", "5")
LAB_ARGS = os.environ.get("BENCH_LAB_ARGS", "").split()


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


def score(ref, words):
    """(edit distance, reference words, start errors in ms) of (text, start) pairs."""
    ref_words = norm(ref["text"])
    ref_times = [w["start"] for w in ref["words"]]
    hyp_tokens, hyp_times = [], []
    for text, start in words:
        for t in norm(text):
            hyp_tokens.append(t)
            hyp_times.append(start)
    dist, pairs = align(ref_words, hyp_tokens)
    errs = [abs(hyp_times[j] - ref_times[i]) * 1000 for i, j in pairs if i < len(ref_times)]
    return dist, len(ref_words), errs


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))] if v else float("nan")


def main():
    lab, ct2, threads, fw_py = sys.argv[1:5]
    clips = [c.split(":") for c in sys.argv[5:]]
    names = ["lab-analyze (whisper.cpp)", "faster-whisper (CTranslate2)"]
    total = {n: {"wall": 0.0, "rss": 0.0, "dist": 0, "n": 0, "errs": []} for n in names}
    duration = 0.0
    print(f"threads {threads}; beam {BEAM}; VAD on; language ru; {len(clips)} clips of espeak-ng Russian think-aloud")
    print(f"{'clip':24} {'contender':30} {'wall s':>7} {'RTF':>6} {'peak MiB':>9} {'WER':>6} {'start err ms med/p90':>21}")
    for audio, ref_path in clips:
        ref = json.load(open(ref_path, encoding="utf-8"))
        duration += ref["duration"]
        out, wall, rss = timed([lab, "transcribe", audio, "--language", "ru", "--format", "json",
                                "--threads", threads, "--beam", BEAM] + LAB_ARGS)
        ours = [(w["word"], w["start"]) for s in json.loads(out)["segments"] for w in s["words"]]
        out, fw_wall, fw_rss = timed([fw_py, "-c", FW_SCRIPT, ct2, audio, threads, BEAM])
        fw = [(w["word"], w["start"]) for w in json.loads(out)["words"]]
        clip = os.path.basename(audio).rsplit(".", 1)[0]
        for name, words, w, r in [(names[0], ours, wall, rss), (names[1], fw, fw_wall, fw_rss)]:
            dist, n, errs = score(ref, words)
            t = total[name]
            t["wall"] += w
            t["rss"] = max(t["rss"], r)
            t["dist"] += dist
            t["n"] += n
            t["errs"] += errs
            print(f"{clip:24} {name:30} {w:7.1f} {w / ref['duration']:6.3f} {r:9.0f} {dist / n:6.3f} "
                  f"{pct(errs, 0.5):10.0f} / {pct(errs, 0.9):.0f}")
    print(f"pooled over {duration:.0f} s of audio:")
    res = []
    for name in names:
        t = total[name]
        wer = t["dist"] / max(1, t["n"])
        print(f"{'all':24} {name:30} {t['wall']:7.1f} {t['wall'] / duration:6.3f} {t['rss']:9.0f} {wer:6.3f} "
              f"{pct(t['errs'], 0.5):10.0f} / {pct(t['errs'], 0.9):.0f}")
        res.append((t["wall"], t["rss"], wer))
    (w0, r0, e0), (w1, r1, e1) = res
    print(f"ratios lab-analyze/faster-whisper: wall {w0 / w1:.2f}, peak memory {r0 / r1:.2f}, WER difference {e0 - e1:+.3f}")
    print("goal: wall ratio <= 1.0 at WER no worse than faster-whisper + 0.02")


if __name__ == "__main__":
    main()
