#!/usr/bin/env python3
"""Compares analysed demo sessions with the ground truth the scripted
participants wrote (demo/personas.js, via demo/run-personas).

    demo/check_truth.py OUT_DIR            # OUT_DIR/truth/*.json, bundles named inside
    demo/check_truth.py TRUTH.json ...

For each session: the journey steps found (analysis/steps.json) must be the
visits walked, each boundary within --step-tolerance (1 s); every injected
friction must be proposed (analysis/candidates.json) by its detector, at its
step, starting within --friction-tolerance (2 s) of the truth; at most
--max-false candidates match no injected friction (a spoken friction,
`match: "span"`, matches a candidate that starts anywhere in the utterance;
as they depend on what Whisper makes of espeak-ng, two thirds of the spoken
ones, over all sessions, are enough); the transcript's word
error rate against the spoken phrases must be at most --max-wer per session
and --max-pooled-wer over all, and at least --min-heard of the spoken words
must be in the transcripts (espeak-ng through Whisper base is rough: these
only catch a broken pipeline). Prints the
measured figures; exits 1 if a bound is broken. The end-to-end test
tests/tests/demo_personas.rs applies the same rules.
"""
import argparse
import glob
import json
import os
import re
import sys


def words(text):
    return [w for w in re.split(r"[^\w]+", text.lower().replace("ё", "е")) if w]


def wer(reference, hypothesis):
    r, h = words(reference), words(hypothesis)
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = d[j]
            d[j] = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev = cur
    return d[len(h)] / max(1, len(r))


def hits(reference, hypothesis):
    """How many reference words the hypothesis has, counted as multisets."""
    from collections import Counter
    return sum((Counter(words(reference)) & Counter(words(hypothesis))).values())


def off(t, f):
    """How far a candidate starting at `t` is from friction `f`: from its start,
    or, for a spoken friction (`match: "span"`), from the utterance."""
    if f.get("match") == "span":
        return max(0, f["start_ns"] - t, t - f["end_ns"])
    return abs(t - f["start_ns"])


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check(truth_path, args):
    t = load(truth_path)
    bundle = t["bundle"]
    an = os.path.join(bundle, "analysis")
    steps = load(os.path.join(an, "steps.json"))
    cands = load(os.path.join(an, "candidates.json"))["candidates"]
    transcript = load(os.path.join(an, "transcript.json"))
    problems = []
    s = lambda ns: ns / 1e9

    # Steps: same visits in the same order, boundaries close.
    want = [(v["step"], v["visit"]) for v in t["steps"]]
    got = [(v["step"], v["visit"]) for v in steps["intervals"]]
    step_errors = []
    if want != got:
        problems.append(f"steps: walked {want}, found {got}")
    else:
        for v, g in zip(t["steps"], steps["intervals"]):
            for key in ("start_ns", "end_ns"):
                err = s(g[key] - v[key])
                step_errors.append(abs(err))
                if abs(err) > args.step_tolerance:
                    problems.append(f"step {v['step']} visit {v['visit']}: {key} off by {err:+.3f} s")

    # Frictions: each found by its detector at its step and time.
    used = set()
    friction_errors = []
    spoken_found = []
    for f in t["frictions"]:
        match = [
            (off(c["start_ns"], f), i)
            for i, c in enumerate(cands)
            if c["detector"] == f["detector"] and c.get("step") == f["step"]
            and off(c["start_ns"], f) <= args.friction_tolerance * 1e9
        ]
        if not match:
            near = [(c["detector"], c.get("step"), round(s(c["start_ns"] - f["start_ns"]), 2)) for c in cands]
            what = (f"friction {f['kind']} ({f['detector']} at {f['step']} {s(f['start_ns']):.2f} s) "
                    f"not proposed; candidates (detector, step, start - truth): {near}")
            if f.get("spoken"):
                print(f"    missed (speech): {what}")  # judged over all sessions in main()
            else:
                problems.append(what)
            continue
        if f.get("spoken"):
            spoken_found.append(f)
        err, i = min(match)
        used.add(i)
        friction_errors.append(s(err))
    # A candidate by a detector a friction lists under `also`, at that friction, is not false.
    for i, c in enumerate(cands):
        for f in t["frictions"]:
            if c["detector"] in f.get("also", []) and f["start_ns"] - 2e9 <= c["start_ns"] <= f["end_ns"] + 2e9:
                used.add(i)
    false = [c for i, c in enumerate(cands) if i not in used]
    if len(false) > args.max_false:
        problems.append(f"{len(false)} false candidates (at most {args.max_false})")

    # Transcript against what was said.
    reference = " ".join(p["text"] for p in t["speech"])
    hypothesis = " ".join(seg["text"] for seg in transcript["segments"])
    w = wer(reference, hypothesis)
    n = len(words(reference))
    heard = hits(reference, hypothesis)
    if w > args.max_wer:
        problems.append(f"WER {w:.2f} > {args.max_wer}")

    dur = s(t["task"]["end_ns"] - t["task"]["start_ns"])
    print(f"{t['persona']} ({t['participant']}, {t['session_id']}): task {dur:.1f} s, "
          f"{len(t['steps'])} step visits, max boundary error {max(step_errors, default=0):.3f} s; "
          f"{len(friction_errors)}/{len(t['frictions'])} frictions found, max start error "
          f"{max(friction_errors, default=0):.3f} s; {len(false)} false candidates; WER {w:.2f}, "
          f"{heard} of {n} words heard")
    for c in false:
        print(f"    false: {c['detector']} at {c.get('step')} {s(c['start_ns']):.2f} s ({c['confidence']}): "
              f"{c['evidence']['note']}")
    print(f"    said:  {reference}")
    print(f"    heard: {hypothesis}")
    for p in problems:
        print(f"    PROBLEM: {p}")
    spoken = sum(1 for f in t["frictions"] if f.get("spoken"))
    return not problems, round(w * n), heard, n, len(spoken_found), spoken


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="run-personas output dirs or truth JSON files")
    ap.add_argument("--step-tolerance", type=float, default=1.0)
    ap.add_argument("--friction-tolerance", type=float, default=2.0)
    ap.add_argument("--max-false", type=int, default=2)
    ap.add_argument("--max-wer", type=float, default=1.6, help="per session")
    ap.add_argument("--max-pooled-wer", type=float, default=1.0)
    ap.add_argument("--min-heard", type=float, default=0.3,
                    help="pooled share of the spoken words found in the transcripts")
    args = ap.parse_args()
    files = []
    for p in args.paths:
        files += sorted(glob.glob(os.path.join(p, "truth", "*.json"))) if os.path.isdir(p) else [p]
    if not files:
        sys.exit("check_truth: no truth files found")
    results = [check(f, args) for f in files]
    edits, heard, n, sp_found, sp_all = (sum(r[i] for r in results) for i in (1, 2, 3, 4, 5))
    pooled, share = edits / max(1, n), heard / max(1, n)
    print(f"pooled: WER {pooled:.2f} ({edits} edits for {n} words), {share:.2f} of the words heard")
    print(f"spoken frictions found: {sp_found} of {sp_all}")
    ok = all(r[0] for r in results)
    if sp_found * 3 < sp_all * 2:
        print(f"PROBLEM: only {sp_found} of {sp_all} spoken frictions found (at least two thirds)")
        ok = False
    if pooled > args.max_pooled_wer:
        print(f"PROBLEM: pooled WER {pooled:.2f} > {args.max_pooled_wer}")
        ok = False
    if share < args.min_heard:
        print(f"PROBLEM: only {share:.2f} of the spoken words heard (at least {args.min_heard})")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
