#!/usr/bin/env python3
"""How far the confusion lexicon's sound tolerance reaches, measured two ways
(scripts/lexicon-coverage runs it):

1. exposure: every lexicon phrase with one of its words replaced by each of
   the N commonest Russian words (wordfreq): the words a phrase then accepts
   though they are not what the lexicon wrote, with their frequency. These
   are the near misses tolerance buys, good («уверя» for «уверен») or bad.
2. through the recogniser: cue phrases found in what was said (the bench's
   reference texts) against those found in what each engine heard (a
   `scripts/bench-transcribe` JSON), per clip as bags of phrases, pooled per
   set (TUNE and HELD-OUT): cues kept, lost and invented, counting a match
   as written or sounding the same (0 edits) apart from those that took
   edits.

Only a measurement: nothing here changes the lexicon.
"""
import argparse
import collections
import json
import re
import subprocess
import sys


def cues(lab, lines):
    """One list of hits per input line, from `lab-analyze cues`."""
    text = "".join(line.replace("\n", " ") + "\n" for line in lines)
    out = subprocess.run([lab, "cues"], input=text, capture_output=True, text=True, check=True)
    return [json.loads(l)["hits"] for l in out.stdout.splitlines()]


def lexicon_phrases(path):
    phrases = []
    for line in open(path, encoding="utf-8"):
        line = line.split("#")[0].strip()
        if line:
            phrases.append(line.split())
    return phrases


def exposure(lab, phrases, words, freq, show):
    lines, origin = [], []
    for p in phrases:
        for i, term in enumerate(p):
            for w in words:
                lines.append(" ".join(x.rstrip("*") if j != i else w for j, x in enumerate(p)))
                origin.append((" ".join(p), i, w))
    hits = cues(lab, lines)
    admitted = collections.defaultdict(list)
    for (phrase, i, w), hs in zip(origin, hits):
        term = phrase.split()[i]
        w_norm = w.replace("ё", "е")
        written = w_norm.startswith(term[:-1]) if term.endswith("*") else w_norm == term
        if written:
            continue
        n = len(phrase.split())
        for h in hs:
            if h["phrase"] == phrase and h["first"] == 0 and h["last"] == n - 1:
                admitted[(phrase, term)].append((freq[w], w, h["edits"]))
    print(f"## Exposure: words the tolerance admits among the {len(words)} commonest\n")
    print("| phrase | word | admitted | frequency per million | commonest admitted (edits) |")
    print("|---|---|---|---|---|")
    total = 0.0
    for (phrase, term), ws in sorted(admitted.items(), key=lambda kv: -sum(f for f, _, _ in kv[1])):
        ws.sort(reverse=True)
        mass = sum(f for f, _, _ in ws) * 1e6
        total += mass
        top = ", ".join(f"{w} ({e})" for _, w, e in ws[:show])
        print(f"| {phrase} | {term} | {len(ws)} | {mass:.1f} | {top} |")
    print(f"\n{len(admitted)} words of phrases admit something; {total:.1f} per million in all.\n")


def split_sentences(text):
    return [s for s in re.split(r"(?<=[.!?…])\s+", text) if s.strip()]


def bags(lab, texts):
    """A Counter of (phrase, took edits) per text."""
    flat, owner = [], []
    for k, t in enumerate(texts):
        for s in split_sentences(t):
            flat.append(s)
            owner.append(k)
    out = [collections.Counter() for _ in texts]
    for k, hs in zip(owner, cues(lab, flat)):
        for h in hs:
            out[k][(h["phrase"], h["edits"] > 0)] += 1
    return out


def through_recogniser(lab, bench):
    clips = bench["clips"]
    refs = bags(lab, [open(f"analyzer/bench/{c['text']}.txt", encoding="utf-8").read() for c in clips])
    print("## Through the recogniser: cue phrases said vs heard (bags per clip)\n")
    print("| engine | set | said | heard as written or alike | heard with edits | lost | invented (alike / with edits) |")
    print("|---|---|---|---|---|---|---|")
    for engine in ("lab", "fw"):
        hyps = bags(lab, [c.get(engine, {}).get("text", "") for c in clips])
        rows = collections.defaultdict(lambda: collections.Counter())
        for c, r, h in zip(clips, refs, hyps):
            if engine not in c:
                continue
            # What was said holds the phrases as written: a hit there that
            # took edits is the tolerance's own invention, not a cue.
            said = collections.Counter()
            for (p, edited), n in r.items():
                if not edited:
                    said[p] += n
            row = rows[c["set"]]
            row["said"] += sum(said.values())
            left = dict(said)
            for tolerant in (False, True):
                for (p, e), n in sorted(h.items()):
                    if e != tolerant:
                        continue
                    kept = min(n, left.get(p, 0))
                    left[p] = left.get(p, 0) - kept
                    row["edits" if tolerant else "alike"] += kept
                    row["inv_edits" if tolerant else "inv_alike"] += n - kept
            row["lost"] += sum(left.values())
        for s, row in sorted(rows.items()):
            print(
                f"| {engine} | {s} | {row['said']} | {row['alike']} | {row['edits']} | {row['lost']} "
                f"| {row['inv_alike']} / {row['inv_edits']} |"
            )
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", required=True, help="lab-analyze binary")
    ap.add_argument("--lexicon", default="analyzer/lexicons/confusion-ru.txt")
    ap.add_argument("--top", type=int, default=50000, help="commonest words to try")
    ap.add_argument("--show", type=int, default=6)
    ap.add_argument("--bench", help="a scripts/bench-transcribe JSON")
    a = ap.parse_args()
    import wordfreq

    words = [w for w in wordfreq.top_n_list("ru", a.top) if re.fullmatch(r"[а-яё]+", w)]
    freq = {w: wordfreq.word_frequency(w, "ru") for w in words}
    exposure(a.lab, lexicon_phrases(a.lexicon), words, freq, a.show)
    if a.bench:
        through_recogniser(a.lab, json.load(open(a.bench, encoding="utf-8")))


if __name__ == "__main__":
    sys.exit(main())
