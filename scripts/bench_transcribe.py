#!/usr/bin/env python3
"""Side-by-side transcription benchmark: `lab-analyze transcribe` (whisper.cpp,
GGML converted from the CTranslate2 checkpoint) against faster-whisper running
that same CTranslate2 checkpoint (float32 compute), on the same clips, with the
same thread count, language ru, beam width (BENCH_BEAM, default 5) and VAD on.

Clips (CLIPS below): six Russian think-aloud texts (analyzer/bench/*.txt), each
voiced by espeak-ng (`ru`, `ru+f3`, `ru+m3`, 130-180 words/min) with a pause
scheme (0.3-1 s, 0.3-4 s, pauses of 8-20 s, or the file's) and a room
(clean, pink noise at 20/10 dB SNR, small-room reverb, 8 kHz telephone band),
see scripts/speech_fixture.py. TUNE = texts 1-3 (the texts earlier tuning
saw), HELD-OUT = texts 4-6 (written for issue 12, never tuned on): figures
are printed per set and for all. `--quick`: four clips of the first five
phrases of a text.

Per clip and pooled, per engine: WER (lower case, ё->е, punctuation removed),
wall time, real-time factor, peak RSS (/usr/bin/time %M), word-start error
median/p90 against espeak-ng's word boundaries (words matched by alignment),
repetition loops (an n-gram of 1-4 words repeated 3+ times in a row); then
ratios ours/theirs and the issue-12 goals with PASS/FAIL. Everything also
goes to a JSON file (--json) so later runs can be compared.

    bench_transcribe.py --lab LAB --ct2 DIR --threads N [--quick] [--json OUT]
        [--work DIR] [--only NAME,...] [--engines lab,fw]

BENCH_LAB_ARGS adds lab-analyze flags (e.g. "--model /tmp/x.bin"); BENCH_FW
adds faster-whisper transcribe() keyword arguments as JSON (e.g.
'{"condition_on_previous_text": false}'). Run with a python that has
faster-whisper and numpy (scripts/bench-transcribe uses .venv-bench's).
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEXTS = os.path.join(HERE, "..", "analyzer", "bench")
BEAM = os.environ.get("BENCH_BEAM", "5")
LAB_ARGS = os.environ.get("BENCH_LAB_ARGS", "").split()
FW_EXTRA = os.environ.get("BENCH_FW", "{}")

# (name, set, text, voice, words/min, pauses, room)
CLIPS = [  # TUNE and HELD-OUT interleaved, so a cut-short run still covers both
    ("t1-ru-150-file-clean", "tune", "think-aloud-ru", "ru", 150, "file", "clean"),
    ("t4-ru-150-mixed-clean", "held-out", "think-aloud-ru-4", "ru", 150, "mixed", "clean"),
    ("t2-m3-140-mixed-pink10", "tune", "think-aloud-ru-2", "ru+m3", 140, "mixed", "pink10"),
    ("t5-m3-150-short-tel8k", "held-out", "think-aloud-ru-5", "ru+m3", 150, "short", "tel8k"),
    ("t1-m3-175-long-reverb", "tune", "think-aloud-ru", "ru+m3", 175, "long", "reverb"),
    ("t6-f3-155-long-pink20", "held-out", "think-aloud-ru-6", "ru+f3", 155, "long", "pink20"),
    ("t3-f3-130-mixed-pink20", "tune", "think-aloud-ru-3", "ru+f3", 130, "mixed", "pink20"),
    ("t4-f3-165-long-pink10", "held-out", "think-aloud-ru-4", "ru+f3", 165, "long", "pink10"),
    ("t2-ru-180-long-tel8k", "tune", "think-aloud-ru-2", "ru", 180, "long", "tel8k"),
    ("t5-ru-135-mixed-reverb", "held-out", "think-aloud-ru-5", "ru", 135, "mixed", "reverb"),
    ("t1-f3-170-short-pink20", "tune", "think-aloud-ru", "ru+f3", 170, "short", "pink20"),
    ("t6-m3-180-mixed-clean", "held-out", "think-aloud-ru-6", "ru+m3", 180, "mixed", "clean"),
    ("t3-m3-160-short-clean", "tune", "think-aloud-ru-3", "ru+m3", 160, "short", "clean"),
    ("t4-m3-135-short-reverb", "held-out", "think-aloud-ru-4", "ru+m3", 135, "short", "reverb"),
]
QUICK = [
    ("q1-ru-150-file-clean", "tune", "think-aloud-ru", "ru", 150, "file", "clean"),
    ("q2-m3-140-long-reverb", "tune", "think-aloud-ru-2", "ru+m3", 140, "long", "reverb"),
    ("q4-f3-165-mixed-pink10", "held-out", "think-aloud-ru-4", "ru+f3", 165, "mixed", "pink10"),
    ("q5-m3-150-short-tel8k", "held-out", "think-aloud-ru-5", "ru+m3", 150, "short", "tel8k"),
]
ENGINES = {"lab": "lab-analyze (whisper.cpp)", "fw": "faster-whisper (CTranslate2)"}


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


def loops(text, min_reps=3, max_n=4):
    """Repetition loops: runs where an n-gram (n <= max_n words; hyphens split
    words, so «ю-ю-ю-ю» counts) repeats min_reps+ times in a row."""
    toks = re.findall(r"\w+", text.lower().replace("ё", "е"))
    found, i = [], 0
    while i < len(toks):
        for n in range(1, min(max_n, len(toks) - i) + 1):
            unit, r = toks[i:i + n], 1
            while toks[i + r * n:i + (r + 1) * n] == unit:
                r += 1
            if r >= min_reps:
                found.append(f"{' '.join(unit)} x{r}")
                i += r * n
                break
        else:
            i += 1
    return found


def timed(cmd):
    t = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S"] + cmd, capture_output=True, text=True)
    wall = time.time() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    rss_kib, user, system = p.stderr.strip().splitlines()[-1].split()
    timed.cpu_s = float(user) + float(system)  # CPU seconds: less disturbed by a loaded machine than wall time
    return p.stdout, wall, int(rss_kib) / 1024


FW_SCRIPT = r"""
import json, sys
from faster_whisper import WhisperModel
model_dir, audio, threads, beam, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
m = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=threads, num_workers=1)
kw = dict(language="ru", beam_size=beam, vad_filter=True, word_timestamps=True)
kw.update(extra)
segs, info = m.transcribe(audio, **kw)
out = []
for s in segs:
    out.append({"start": s.start, "end": s.end, "text": s.text, "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob,
                "temperature": s.temperature,
                "words": [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in (s.words or [])]})
print(json.dumps({"segments": out, "compute_type": "float32", "options": kw}, ensure_ascii=False))
"""


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))] if v else float("nan")


def score(ref, words):
    """(edit distance, reference word count, start errors in ms) of (text, start) pairs."""
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


def make_clip(work, spec, phrases, seed):
    name, _, text, voice, speed, pauses, room = spec
    wav, ref = os.path.join(work, name + ".wav"), os.path.join(work, name + ".json")
    if not (os.path.exists(wav) and os.path.exists(ref)):
        cmd = [sys.executable, os.path.join(HERE, "speech_fixture.py"), os.path.join(TEXTS, text + ".txt"),
               wav, ref, "--voice", voice, "--speed", str(speed), "--pauses", pauses, "--room", room,
               "--seed", str(seed)]
        if phrases:
            cmd += ["--phrases", str(phrases)]
        subprocess.run(cmd, check=True)
    return wav, ref


def run_lab(lab, audio, threads):
    out, wall, rss = timed([lab, "transcribe", audio, "--language", "ru", "--format", "json",
                            "--threads", str(threads), "--beam", BEAM] + LAB_ARGS)
    segs = json.loads(out)["segments"]
    words = [(w["word"], w["start"]) for s in segs for w in s["words"]]
    text = " ".join(s["text"] for s in segs)
    return words, text, wall, rss, segs


def run_fw(fw_py, ct2, audio, threads):
    out, wall, rss = timed([fw_py, "-c", FW_SCRIPT, ct2, audio, str(threads), BEAM, FW_EXTRA])
    segs = json.loads(out)["segments"]
    words = [(w["word"], w["start"]) for s in segs for w in s["words"]]
    text = " ".join(s["text"].strip() for s in segs)
    return words, text, wall, rss, segs


def summary(rows, engine):
    rs = [r[engine] for r in rows]
    dur = sum(r["duration"] for r in rows)
    n = sum(x["ref_words"] for x in rs)
    errs = [e for x in rs for e in x["start_errors_ms"]]
    wall = sum(x["wall_s"] for x in rs)
    cpu = sum(x.get("cpu_s", float("nan")) for x in rs)
    return {"clips": len(rs), "duration_s": dur, "wer": sum(x["edits"] for x in rs) / max(1, n),
            "wall_s": wall, "cpu_s": cpu, "rtf": wall / dur if dur else float("nan"),
            "peak_mib": max(x["peak_mib"] for x in rs), "start_err_med_ms": pct(errs, 0.5),
            "start_err_p90_ms": pct(errs, 0.9), "loops": sum(len(x["loops"]) for x in rs)}


def goals(rows, s):
    lab, fw = s["lab"], s["fw"]
    worst = max(r["lab"]["wer"] - r["fw"]["wer"] for r in rows)
    return [
        ("pooled WER <= faster-whisper + 0.02", f"{lab['wer']:.3f} vs {fw['wer']:.3f}", lab["wer"] <= fw["wer"] + 0.02),
        ("no clip WER worse than +0.05", f"worst {worst:+.3f}", worst <= 0.05),
        ("wall time ratio <= 1.0", f"{lab['wall_s'] / fw['wall_s']:.2f}", lab["wall_s"] <= fw["wall_s"]),
        ("peak memory <= faster-whisper's", f"{lab['peak_mib']:.0f} vs {fw['peak_mib']:.0f} MiB",
         lab["peak_mib"] <= fw["peak_mib"]),
        ("word-start median error <= faster-whisper's",
         f"{lab['start_err_med_ms']:.0f} vs {fw['start_err_med_ms']:.0f} ms",
         lab["start_err_med_ms"] <= fw["start_err_med_ms"]),
        ("no repetition loops", f"{lab['loops']} (faster-whisper {fw['loops']})", lab["loops"] == 0),
    ]


def report(rows, engines):
    """Prints pooled figures, ratios and goals per set; returns them."""
    sets = {}
    for set_name in ["tune", "held-out", "all"]:
        sel = [r for r in rows if set_name == "all" or r["set"] == set_name]
        if not sel:
            continue
        s = {e: summary(sel, e) for e in engines}
        sets[set_name] = s
        print(f"\n{set_name}: {len(sel)} clips, {s[engines[0]]['duration_s']:.0f} s of audio")
        for e in engines:
            x = s[e]
            print(f"  {ENGINES[e]:30} WER {x['wer']:.3f}  wall {x['wall_s']:7.1f} s  RTF {x['rtf']:.3f}  "
                  f"CPU {x['cpu_s']:.1f} s  peak {x['peak_mib']:.0f} MiB  start err {x['start_err_med_ms']:.0f} / "
                  f"{x['start_err_p90_ms']:.0f} ms  loops {x['loops']}")
        if len(engines) == 2:
            lab, fw = s["lab"], s["fw"]
            print(f"  ratios lab/fw: wall {lab['wall_s'] / fw['wall_s']:.2f}, CPU time {lab['cpu_s'] / fw['cpu_s']:.2f}, peak memory "
                  f"{lab['peak_mib'] / fw['peak_mib']:.2f}, WER {lab['wer'] - fw['wer']:+.3f}, "
                  f"start err median {lab['start_err_med_ms'] / max(1, fw['start_err_med_ms']):.2f}")
            g = goals(sel, s)
            s["goals"] = [{"goal": n, "value": v, "pass": p} for n, v, p in g]
            for n, v, p in g:
                print(f"  {'PASS' if p else 'FAIL'}  {n}: {v}")
    return sets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab")
    ap.add_argument("--ct2")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--work", help="clip folder (kept; clips already there are reused)")
    ap.add_argument("--only", help="comma-separated clip names")
    ap.add_argument("--engines", default="lab,fw")
    ap.add_argument("--phrases", type=int, default=0,
                    help="only the first N phrases of each text (a shorter run; --quick uses 5)")
    ap.add_argument("--summarize", metavar="JSON", help="only print the figures of an earlier (partial) run")
    a = ap.parse_args()
    if a.summarize:
        rows = json.load(open(a.summarize, encoding="utf-8"))["clips"]
        print("| clip | set | WER ours / FW | wall s ours / FW | peak MiB ours / FW | word start median (p90) ms ours / FW | loops ours / FW |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            if "lab" not in r or "fw" not in r:
                continue
            x, y = r["lab"], r["fw"]
            print(f"| {r['clip']} | {r['set']} | {x['wer']:.3f} / {y['wer']:.3f} | {x['wall_s']:.1f} / {y['wall_s']:.1f} "
                  f"| {x['peak_mib']:.0f} / {y['peak_mib']:.0f} | {x['start_err_med_ms']:.0f} ({x['start_err_p90_ms']:.0f}) / "
                  f"{y['start_err_med_ms']:.0f} ({y['start_err_p90_ms']:.0f}) | {len(x['loops'])} / {len(y['loops'])} |")
        report(rows, [e for e in ENGINES if e in rows[0]])
        return
    specs = QUICK if a.quick else CLIPS
    if a.only:
        specs = [s for s in specs if s[0] in a.only.split(",")]
    engines = a.engines.split(",")
    work = a.work or tempfile.mkdtemp(prefix="bench-transcribe.")
    os.makedirs(work, exist_ok=True)
    print(f"threads {a.threads}; beam {BEAM}; VAD on; language ru; {len(specs)} clips; clips in {work}")
    print(f"{'clip':24} {'set':8} {'engine':4} {'wall s':>7} {'CPU s':>6} {'RTF':>6} {'MiB':>5} {'WER':>6} "
          f"{'start err ms med/p90':>21} loops", flush=True)
    rows = []
    for k, spec in enumerate(CLIPS + QUICK):
        if spec not in specs:
            continue
        wav, ref_path = make_clip(work, spec, a.phrases or (5 if a.quick else 0), seed=k + 1)
        ref = json.load(open(ref_path, encoding="utf-8"))
        row = {"clip": spec[0], "set": spec[1], "text": spec[2], "voice": spec[3], "speed": spec[4],
               "pauses": spec[5], "room": spec[6], "duration": ref["duration"], "max_pause_s": max(ref["pauses"])}
        for eng in engines:
            if eng == "lab":
                words, text, wall, rss, segs = run_lab(a.lab, wav, a.threads)
            else:
                words, text, wall, rss, segs = run_fw(sys.executable, a.ct2, wav, a.threads)
            dist, n, errs = score(ref, words)
            ref_loops = loops(ref["text"])  # a repetition the speaker said is no loop
            lp = [x for x in loops(text) if x not in ref_loops]
            row[eng] = {"wer": dist / n, "edits": dist, "ref_words": n, "wall_s": wall,
                        "rtf": wall / ref["duration"], "cpu_s": timed.cpu_s, "peak_mib": rss, "start_errors_ms": errs,
                        "start_err_med_ms": pct(errs, 0.5), "start_err_p90_ms": pct(errs, 0.9),
                        "loops": lp, "text": text, "segments": segs}
            print(f"{spec[0]:24} {spec[1]:8} {eng:4} {wall:7.1f} {timed.cpu_s:6.1f} {wall / ref['duration']:6.3f} {rss:5.0f} "
                  f"{dist / n:6.3f} {pct(errs, 0.5):10.0f} / {pct(errs, 0.9):<9.0f} {len(lp)}", flush=True)
        rows.append(row)
        if a.json:  # after every clip, so a run cut short still leaves its rows
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump({"partial": True, "clips": rows}, f, ensure_ascii=False, indent=1)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": f"{platform.node()} {os.cpu_count()} cpus", "threads": a.threads, "beam": BEAM,
              "lab_args": LAB_ARGS, "fw_extra": json.loads(FW_EXTRA), "quick": a.quick, "phrases": a.phrases,
              "clips": rows}
    result["sets"] = report(rows, engines)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(result, f, ensure_ascii=False, indent=1)
        print(f"\nresults: {a.json}")


if __name__ == "__main__":
    main()
