#!/usr/bin/env python3
"""Dumps, for one window of a clip, what the two engines see and say:

1. the log-mel input: faster-whisper's (FeatureExtractor: 160 samples of
   padding, clamp at the max of the whole audio, the 30 s window padded with
   zeros in the normalised log-mel domain, audio.pad_or_trim) and whisper.cpp's
   (a numpy port of whisper.cpp's log_mel_spectrogram() in src/whisper.cpp:
   200 reflected samples in front, 30 s of zero *samples* behind, clamp at the
   max including that padding, so its padding frames sit at (max-8+4)/4);
2. the encoder output of the CTranslate2 float32 model for both mels
   (mean, std, max |difference|, cosine);
3. beam-5 decodes of both mels by CTranslate2 (faster-whisper's prompt: SOT,
   language, transcribe, timestamps on; and with <|notimestamps|>), with
   the average log-probability faster-whisper's fallback rule reads;
4. per-token log-probabilities, teacher-forced under the float32 model, of
   faster-whisper's text and of lab-analyze's text for the same audio (whisper.cpp's
   own per-word mean token probability comes from `lab-analyze transcribe
   --format json`, field `confidence`).

    dump_window.py CLIP.wav START END --ct2 DIR --lab LAB [--ref CLIP.json] [--json OUT]

Run with .venv-bench's python (faster-whisper, numpy). START/END in seconds of
the clip; the window is cut out, written as a 16 kHz WAV and given to both.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np
import ctranslate2
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio, pad_or_trim
from faster_whisper.tokenizer import Tokenizer

N_FFT, HOP, RATE = 400, 160, 16000


def mel_whisper_cpp(samples, filters):
    """whisper.cpp 1.8 log_mel_spectrogram(), in float32 (its FFT is float too)."""
    pad2 = N_FFT // 2
    x = np.zeros(len(samples) + RATE * 30 + 2 * pad2, dtype=np.float32)
    x[pad2:pad2 + len(samples)] = samples
    x[:pad2] = samples[1:1 + pad2][::-1]
    n_len = (len(x) - N_FFT) // HOP
    hann = (0.5 * (1 - np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT))).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:n_len] * hann
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).astype(np.float32)
    mel = np.log10(np.maximum(filters @ power.T, 1e-10)).astype(np.float32)
    # whisper.cpp's workers leave frames past the audio at log10(1e-10) (zeros in);
    # the clamp below lifts them to max - 8 either way.
    mel = np.maximum(mel, mel.max() - 8.0)
    return (mel + 4.0) / 4.0


def stats(a):
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


def teacher_forced(model, enc, prompt, seq):
    """log p(seq[i] | prompt + seq[:i]) under the model, one decoder call per token."""
    out = []
    for i in range(len(seq)):
        r = model.generate(enc, [prompt + seq[:i]], beam_size=1, max_length=len(prompt) + i + 1,
                           return_logits_vocab=True, suppress_blank=False, suppress_tokens=[],
                           max_initial_timestamp_index=1500)[0]
        logits = np.array(r.logits[0][0], dtype=np.float64) if r.logits else None
        if logits is None:
            out.append(float("nan"))
            continue
        lp = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        out.append(float(lp[seq[i]]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("start", type=float)
    ap.add_argument("end", type=float)
    ap.add_argument("--ct2", required=True)
    ap.add_argument("--lab")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref")
    ap.add_argument("--json")
    ap.add_argument("--from-bench", nargs=2, metavar=("RESULTS.json", "CLIP_NAME"),
                    help="take both engines' texts of the whole clip from a bench_transcribe.py run "
                         "instead of running them (START END must then cover the clip)")
    a = ap.parse_args()

    audio = decode_audio(a.clip, sampling_rate=RATE)
    win = audio[int(a.start * RATE):int(a.end * RATE)]
    tmp = tempfile.mkdtemp(prefix="dump-window.")
    wav = os.path.join(tmp, "window.wav")
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.clip(np.round(win * 32768), -32768, 32767).astype("<i2").tobytes())
    win = decode_audio(wav, sampling_rate=RATE)  # what both engines will read back
    report = {"clip": a.clip, "window_s": [a.start, a.end], "samples": len(win)}

    fw = WhisperModel(a.ct2, device="cpu", compute_type="float32", cpu_threads=a.threads)
    fe = fw.feature_extractor
    mel_fw = pad_or_trim(fe(win))  # as generate_segments() builds a window
    mel_cpp = mel_whisper_cpp(win, fe.mel_filters.astype(np.float32))[:, :3000]
    frames = len(win) // HOP
    report["mel"] = {
        "faster_whisper": stats(mel_fw), "whisper_cpp": stats(mel_cpp),
        "speech_frames": frames,
        "max_abs_diff_speech": float(np.abs(mel_fw[:, :frames] - mel_cpp[:, :frames]).max()),
        "mean_abs_diff_speech": float(np.abs(mel_fw[:, :frames] - mel_cpp[:, :frames]).mean()),
        "padding_value_faster_whisper": float(mel_fw[0, -1]),
        "padding_value_whisper_cpp": float(mel_cpp[0, -1]),
    }
    model = fw.model
    enc = {}
    for name, mel in [("faster_whisper", mel_fw), ("whisper_cpp", mel_cpp)]:
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        enc[name] = model.encode(sv, to_cpu=True)
    e_fw, e_cpp = (np.array(enc[k]) for k in ("faster_whisper", "whisper_cpp"))
    cos = float((e_fw * e_cpp).sum() / np.sqrt((e_fw ** 2).sum() * (e_cpp ** 2).sum()))
    n_enc = min(1500, (frames + 1) // 2)
    report["encoder"] = {"faster_whisper": stats(e_fw), "whisper_cpp_mel": stats(e_cpp),
                         "max_abs_diff": float(np.abs(e_fw - e_cpp).max()),
                         "max_abs_diff_speech_part": float(np.abs(e_fw[0, :n_enc] - e_cpp[0, :n_enc]).max()),
                         "cosine": cos}

    tok = Tokenizer(fw.hf_tokenizer, True, task="transcribe", language="ru")
    decodes = {}
    for name in ("faster_whisper", "whisper_cpp"):
        for ts in (True, False):
            prompt = list(tok.sot_sequence) + ([] if ts else [tok.no_timestamps])
            r = model.generate(enc[name], [prompt], beam_size=5, return_scores=True, return_no_speech_prob=True,
                               max_initial_timestamp_index=50, suppress_tokens=[-1], suppress_blank=True)[0]
            ids = r.sequences_ids[0]
            decodes[f"{name}_mel{'' if ts else '_notimestamps'}"] = {
                "text": tok.decode([t for t in ids if t < tok.eot]).strip(),
                "avg_logprob": r.scores[0] * len(ids) / (len(ids) + 1),
                "no_speech_prob": r.no_speech_prob}
    report["ct2_decodes"] = decodes

    if not a.from_bench and not a.lab:  # steps 1-3 only
        txt = json.dumps(report, ensure_ascii=False, indent=1)
        if a.json:
            open(a.json, "w", encoding="utf-8").write(txt)
        print(txt)
        return
    if a.from_bench:
        row = next(r for r in json.load(open(a.from_bench[0], encoding="utf-8"))["clips"]
                   if r["clip"] == a.from_bench[1])
        lab_segs, fw_dicts = row["lab"]["segments"], row["fw"]["segments"]
    else:
        lab = subprocess.run([a.lab, "transcribe", wav, "--language", "ru", "--format", "json",
                              "--threads", str(a.threads)], capture_output=True, text=True, check=True)
        lab_segs = json.loads(lab.stdout)["segments"]
        fw_segs, _ = fw.transcribe(wav, language="ru", beam_size=5, vad_filter=True)
        fw_dicts = [{"text": s.text, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                     "no_speech_prob": s.no_speech_prob, "temperature": s.temperature} for s in fw_segs]
    lab_text = " ".join(s["text"] for s in lab_segs)
    fw_text = " ".join(s["text"].strip() for s in fw_dicts)
    report["lab_analyze"] = {"text": lab_text,
                             "words": [(w["word"], round(w["confidence"], 3)) for s in lab_segs for w in s["words"]]}
    report["faster_whisper"] = {"text": fw_text, "segments": [
        {k: s[k] for k in ("text", "avg_logprob", "compression_ratio", "no_speech_prob", "temperature")}
        for s in fw_dicts]}
    prompt = list(tok.sot_sequence) + [tok.no_timestamps]
    forced = {}
    for name, text in [("faster_whisper_text", fw_text), ("lab_analyze_text", lab_text)] + (
            [("reference_text", json.load(open(a.ref, encoding="utf-8"))["text"])] if a.ref else []):
        if name == "reference_text":
            continue  # the clip's whole reference is not the window's; pass --ref for WER only
        seq = tok.encode(" " + text.strip()) + [tok.eot]
        lps = teacher_forced(model, enc["faster_whisper"], prompt, seq)
        forced[name] = {"tokens": len(seq), "sum_logprob": sum(lps), "avg_logprob": sum(lps) / len(lps),
                        "per_token": [(tok.decode([t]) if t < tok.eot else "<eot>", round(lp, 3))
                                      for t, lp in zip(seq, lps)]}
    report["teacher_forced_float32"] = forced
    txt = json.dumps(report, ensure_ascii=False, indent=1)
    if a.json:
        open(a.json, "w", encoding="utf-8").write(txt)
    print(txt)


if __name__ == "__main__":
    main()
