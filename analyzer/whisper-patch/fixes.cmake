# Build-time fix to whisper.cpp 1.8 (whisper-rs-sys 0.15), included by CMake
# at whisper.cpp's project() through CMAKE_PROJECT_INCLUDE, which
# .cargo/config.toml sets and whisper-rs-sys's build script passes on. It
# edits the copy of whisper.cpp that the build script makes in its OUT_DIR,
# never the registry's.
#
# Fix 1: whisper.cpp's beam search takes each beam's candidates by
# *sampling* them from the model's distribution (whisper_sample_token_topk:
# std::discrete_distribution over all tokens), also at temperature 0, so
# "beam search at T = 0" was a random search: its words depended on the
# random generator's history and it fell into repetition loops that a true
# beam search (faster-whisper's CTranslate2, OpenAI's reference) does not.
# Patched, at T = 0 each beam's candidates are its k most probable tokens
# (ties by token id), as in those; at T > 0 it still samples.
#
# Fix 2: the alignment pass behind DTW word times (one decoder run over a
# window's whole token sequence) computed the vocabulary logits for every
# token, though nothing reads them: with 200 tokens that is 200 x 51,865 x
# 512 multiply-adds, most of the pass's time. Patched, it computes the last
# row only (all whisper_decode_internal copies out in that pass).
#
# Fix 3: at T > 0 whisper.cpp divides the logits by the temperature before
# its log-softmax, so a token's log-probability (token_data.plog, and the
# sums that rank decoders) is that of the sharpened distribution it samples
# from: at T = 0.2 a window of garbage scored about -0.15 per token where
# the same audio's T = 0 reading scored -1.1, and every fallback was
# "accepted" by the log-probability rule at its first try. OpenAI's
# reference and CTranslate2 (faster-whisper) sample from the scaled
# distribution but score a token by the model's own one (T = 1). Patched,
# so: a second log-softmax of the logits times T (after the same filters)
# gives plog at T > 0; sampling is unchanged.
#
# Fix 4: whisper_full encodes its input on every call, and lab-analyze makes
# one call per temperature (the choice among attempts is ours), so every
# fallback paid for the encoder again. Patched, a call on a state whose last
# encode was of the same log-mel at the same offset reuses that encoder
# output (and its cross-attention keys and values), as faster-whisper
# encodes once per window for all its temperatures.
#
# Fix 5: whisper.cpp's beam search lets a beam that ends (end of text, or a
# timestamp at the end of the audio) keep its slot, finished, so the search
# narrows as beams end and the last beams decode alone, often into a loop
# until the 224-token limit; and at the first step all five beams take the
# same token (the five decoders are copies, and duplicates are only skipped
# from the second step on). CTranslate2 (faster-whisper) and OpenAI's
# reference keep the beam full: a candidate among the best `beam` that ends
# is set aside as a finished hypothesis and the next live candidate takes its
# place, and the search stops once `beam` x patience hypotheses have ended
# (or at the step limit, where the live beams count too); the best of them
# by the length-normalised score is kept. Patched, so at T = 0: each beam
# offers its 2 x beam best tokens, the first step's candidates come from one
# decoder, and the finished hypotheses are ranked (with whisper.cpp's own
# score and entropy test) into decoder 0 for the rest of whisper_full.
# Once a hypothesis has ended, the abort callback is no longer passed on:
# lab-analyze's loop watch gives up an attempt whose live beams all loop,
# which is right only while no ended hypothesis is waiting to be chosen.
#
# Fix 6: whisper.cpp pads a window's samples with 30 s of zero samples
# before its log-mel, so the frames after the audio sit at the clamp level
# (the window's max - 8, normalised: about -0.7 on speech), as OpenAI's
# reference does. faster-whisper computes the features of the audio alone
# and pads the normalised features with 0.0 (pad_or_trim); every window of
# ours is under 30 s, so every one differed there, and the encoder's output
# over the speech moves with it (cosine 0.981 on one window). Patched, the
# frames after the audio are 0.0. Measured on the bench's 14 clips: pooled
# WER 0.875 -> 0.865, clips more than 0.05 worse than faster-whisper 4 -> 2
# (docs/transcription.md, "The window's padding").
#
# See docs/transcription.md, "whisper.cpp's beam search samples" and
# "Log-probabilities at T > 0".
set(_file "${CMAKE_SOURCE_DIR}/src/whisper.cpp")
if(NOT EXISTS "${_file}")
  return()
endif()
file(READ "${_file}" _src)
string(FIND "${_src}" "LAB_WHISPER_FIXES" _done)
if(NOT _done EQUAL -1)
  return()
endif()
function(lab_edit old new)
  string(FIND "${_src}" "${old}" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "analyzer/whisper-patch/fixes.cmake: whisper.cpp changed, text not found:\n${old}")
  endif()
  string(REPLACE "${old}" "${new}" _out "${_src}")
  set(_src "${_out}" PARENT_SCOPE)
endfunction()
lab_edit([=[whisper_decoder & decoder,
                        int   k) {]=] [=[whisper_decoder & decoder,
                        int   k,
                       bool   best /* LAB_BEAM_TOP_K */) {]=])
lab_edit([=[        const auto id = dist(decoder.rng);
        //printf("XXX]=] [=[        // LAB_BEAM_TOP_K: the i-th most probable token at T = 0.
        if (best && !(logits_id[i].first > -INFINITY)) {
            break;
        }
        const auto id = best ? logits_id[i].second : dist(decoder.rng);
        //printf("XXX]=])
lab_edit([=[whisper_sample_token_topk(*ctx, decoder, params.beam_search.beam_size);]=]
         [=[whisper_sample_token_topk(*ctx, decoder, params.beam_search.beam_size, t_cur < 1e-6f);]=])
lab_edit([=[    struct ggml_tensor * logits = ggml_mul_mat(ctx0, model.d_te, cur);
]=] [=[    // LAB_DTW_LAST_LOGITS: the alignment pass reads no logits.
    if (save_alignment_heads_QKs) {
        cur = ggml_view_2d(ctx0, cur, cur->ne[0], 1, cur->nb[1], (cur->ne[1] - 1)*cur->nb[1]);
    }
    struct ggml_tensor * logits = ggml_mul_mat(ctx0, model.d_te, cur);
]=])
lab_edit([=[    logits_out.resize(n_tokens*n_vocab);
    for (int i = 0; i < n_tokens; i++) {
        if (batch.logits[i] == 0) {
            continue;
        }]=] [=[    logits_out.resize(n_tokens*n_vocab);
    if (save_alignment_heads_QKs) {
        // LAB_DTW_LAST_LOGITS: one row was computed, the last token's.
        ggml_backend_tensor_get(logits, logits_out.data() + n_vocab*(n_tokens - 1), 0, sizeof(float)*n_vocab);
    }
    for (int i = 0; i < n_tokens && !save_alignment_heads_QKs; i++) {
        if (batch.logits[i] == 0) {
            continue;
        }]=])
lab_edit([=[    std::vector<float> logprobs;

    // work container used to avoid memory allocations]=] [=[    std::vector<float> logprobs;
    // LAB_PLOG_T1: log_softmax of the logits before the temperature (T > 0 only).
    std::vector<float> logprobs_t1;

    // work container used to avoid memory allocations]=])
lab_edit([=[    // compute probs
    whisper_compute_probs(logits, n_logits, logprobs, probs);]=] [=[    // LAB_PLOG_T1: the model's own log-probabilities, for plog.
    if (temperature > 0.0f) {
        auto & t1 = decoder.logprobs_t1;
        t1.resize(n_logits);
        for (int i = 0; i < n_logits; ++i) {
            t1[i] = logits[i] > -INFINITY ? logits[i]*temperature : -INFINITY;
        }
        whisper_compute_logprobs(t1, n_logits, t1);
    } else {
        decoder.logprobs_t1.clear();
    }

    // compute probs
    whisper_compute_probs(logits, n_logits, logprobs, probs);]=])
lab_edit([=[result.plog = logprobs[i];]=] [=[result.plog = decoder.logprobs_t1.empty() ? logprobs[i] : decoder.logprobs_t1[i];]=])
lab_edit([=[result.plog = logprobs[result.id];]=] [=[result.plog = decoder.logprobs_t1.empty() ? logprobs[result.id] : decoder.logprobs_t1[result.id];]=])
lab_edit([=[result.push_back({ id, tid, probs[id], logprobs[id], pt, ptsum,]=] [=[result.push_back({ id, tid, probs[id], decoder.logprobs_t1.empty() ? logprobs[id] : decoder.logprobs_t1[id], pt, ptsum,]=])
lab_edit([=[struct whisper_state {
    int64_t t_sample_us = 0;]=] [=[struct whisper_state {
    // LAB_ENCODER_REUSE: the log-mel and offset of the last successful encode.
    std::vector<float> lab_enc_mel;
    int lab_enc_offset = -1;

    int64_t t_sample_us = 0;]=])
lab_edit([=[        if (!whisper_encode_internal(*ctx, *state, seek, params.n_threads, params.abort_callback, params.abort_callback_user_data)) {
            WHISPER_LOG_ERROR("%s: failed to encode\n", __func__);
            return -6;
        }]=] [=[        // LAB_ENCODER_REUSE: the same mel at the same offset is encoded already.
        const bool lab_reuse = state->lab_enc_offset == seek && state->lab_enc_mel == state->mel.data;
        if (!lab_reuse && !whisper_encode_internal(*ctx, *state, seek, params.n_threads, params.abort_callback, params.abort_callback_user_data)) {
            state->lab_enc_offset = -1;
            WHISPER_LOG_ERROR("%s: failed to encode\n", __func__);
            return -6;
        }
        if (!lab_reuse) {
            state->lab_enc_offset = seek;
            state->lab_enc_mel = state->mel.data;
        }]=])
lab_edit([=[whisper_sample_token_topk(*ctx, decoder, params.beam_search.beam_size, t_cur < 1e-6f);]=]
         [=[whisper_sample_token_topk(*ctx, decoder, t_cur < 1e-6f ? 2*params.beam_search.beam_size : params.beam_search.beam_size, t_cur < 1e-6f);]=])
lab_edit([=[    std::vector<beam_candidate> beam_candidates;
]=] [=[    std::vector<beam_candidate> beam_candidates;
    // LAB_BEAM_KEEP_WIDTH: hypotheses that ended (T = 0 beam search), and
    // whether enough of them ended before the step limit.
    std::vector<beam_candidate> lab_finished;
    bool lab_enough = false;
    const bool lab_keep_width_on = params.strategy == whisper_sampling_strategy::WHISPER_SAMPLING_BEAM_SEARCH;
]=])
lab_edit([=[            n_decoders_cur = std::max(1, n_decoders_cur);
]=] [=[            n_decoders_cur = std::max(1, n_decoders_cur);
            // LAB_BEAM_KEEP_WIDTH
            const bool lab_keep_width = lab_keep_width_on && t_cur < 1e-6f;
            const size_t lab_max_finished = (size_t) std::max(1.0f, std::round(n_decoders_cur*(params.beam_search.patience > 0.0f ? params.beam_search.patience : 1.0f)));
            lab_finished.clear();
            lab_enough = false;
]=])
lab_edit([=[                    uint32_t cur_c = 0;

                    for (int j = 0; j < n_decoders_cur; ++j) {]=] [=[                    // LAB_BEAM_KEEP_WIDTH: the beam stays full (see fixes.cmake, fix 5).
                    if (lab_keep_width) {
                        std::vector<int> slots;
                        for (int j = 0; j < n_decoders_cur; ++j) {
                            if (!state->decoders[j].completed && !state->decoders[j].failed) {
                                slots.push_back(j);
                            }
                        }
                        size_t filled = 0;
                        size_t rank = 0;
                        for (size_t c = 0; c < beam_candidates.size() && filled < slots.size(); ++c) {
                            const auto & cand = beam_candidates[c];
                            if (i == 0 && cand.decoder_idx != 0) {
                                continue; // the decoders are copies at the first step
                            }
                            const bool top = rank++ < slots.size();
                            const auto & tok = cand.sequence.tokens.back();
                            bool ends = tok.id == whisper_token_eot(ctx) || (params.max_tokens > 0 && i >= params.max_tokens);
                            if (tok.id > whisper_token_beg(ctx)) {
                                ends = ends || seek + 2*(tok.id - whisper_token_beg(ctx)) + delta_min >= seek_end;
                            }
                            if (ends) {
                                if (!top) {
                                    continue;
                                }
                                // The end-of-segment rules of the update below, for this hypothesis.
                                beam_candidate fin = cand;
                                bool fin_failed = false;
                                if (tok.id > whisper_token_beg(ctx)) {
                                    const int seek_delta_new = 2*(tok.id - whisper_token_beg(ctx));
                                    if (fin.has_ts && fin.seek_delta > seek_delta_new && fin.sequence.result_len < i) {
                                        fin_failed = true;
                                    } else {
                                        fin.seek_delta = seek_delta_new;
                                        fin.sequence.result_len = i + 1;
                                        fin.has_ts = true;
                                    }
                                }
                                if (!fin_failed && fin.sequence.result_len == 0 && !params.no_timestamps) {
                                    if (seek + fin.seek_delta + delta_min >= seek_end) {
                                        fin.sequence.result_len = i + 1;
                                    } else {
                                        fin_failed = true;
                                    }
                                }
                                if (!fin_failed) {
                                    if (params.single_segment || params.no_timestamps) {
                                        fin.sequence.result_len = i + 1;
                                        fin.seek_delta = 100*WHISPER_CHUNK_SIZE;
                                    }
                                    lab_finished.push_back(std::move(fin));
                                }
                                continue;
                            }
                            const int j = slots[filled++];
                            auto & decoder = state->decoders[j];
                            decoder.seek_delta = cand.seek_delta;
                            decoder.has_ts     = cand.has_ts;
                            decoder.sequence   = cand.sequence;
                            decoder.grammar    = cand.grammar;
                            whisper_kv_cache_seq_cp(state->kv_self, cand.decoder_idx, WHISPER_MAX_DECODERS + j, -1, -1);
                        }
                        for (size_t s = filled; s < slots.size(); ++s) {
                            state->decoders[slots[s]].failed = true; // no live candidate left for it
                        }
                    } else {
                    uint32_t cur_c = 0;

                    for (int j = 0; j < n_decoders_cur; ++j) {]=])
lab_edit([=[decoder.sequence.tokens.back().plog, decoder.sequence.sum_logprobs_all);
                    }
]=] [=[decoder.sequence.tokens.back().plog, decoder.sequence.sum_logprobs_all);
                    }
                    } // LAB_BEAM_KEEP_WIDTH
]=])
lab_edit([=[                    if (completed_all) {
                        break;
                    }]=] [=[                    if (completed_all) {
                        break;
                    }
                    // LAB_BEAM_KEEP_WIDTH: enough hypotheses have ended.
                    if (lab_keep_width && lab_finished.size() >= lab_max_finished) {
                        lab_enough = true;
                        break;
                    }]=])
lab_edit([=[            // rank the resulting sequences and select the best one
            {]=] [=[            // LAB_BEAM_KEEP_WIDTH: the ended hypotheses (and, at the step limit,
            // the live beams) are ranked; the best goes to decoder 0, the only
            // one the ranking below then sees.
            if (lab_keep_width) {
                if (!lab_enough) {
                    for (int j = 0; j < n_decoders_cur; ++j) {
                        const auto & d = state->decoders[j];
                        if (!d.failed) {
                            lab_finished.push_back({ j, d.seek_delta, d.has_ts, d.sequence, d.grammar, });
                        }
                    }
                }
                int lab_best = -1;
                bool lab_best_ok = false;
                double lab_best_score = -INFINITY;
                for (size_t f = 0; f < lab_finished.size(); ++f) {
                    auto & seq = lab_finished[f].sequence;
                    if (seq.result_len == 0) {
                        continue;
                    }
                    seq.tokens.resize(seq.result_len);
                    whisper_sequence_score(params, seq);
                    const bool ok = !(seq.result_len > 32 && seq.entropy < params.entropy_thold);
                    WHISPER_LOG_DEBUG("%s: ended hypothesis %2zu: score = %8.5f, result_len = %3d, entropy = %8.5f\n",
                            __func__, f, seq.score, seq.result_len, seq.entropy);
                    if ((ok && !lab_best_ok) || (ok == lab_best_ok && seq.score > lab_best_score)) {
                        lab_best = (int) f;
                        lab_best_ok = ok;
                        lab_best_score = seq.score;
                    }
                }
                for (int j = 0; j < n_decoders_cur; ++j) {
                    state->decoders[j].failed = true;
                }
                if (lab_best >= 0) {
                    auto & d = state->decoders[0];
                    const auto & b = lab_finished[lab_best];
                    d.sequence   = b.sequence;
                    d.seek_delta = b.seek_delta;
                    d.has_ts     = b.has_ts;
                    d.completed  = true;
                    d.failed     = !lab_best_ok;
                }
            }

            // rank the resulting sequences and select the best one
            {]=])
lab_edit([=[                    if (!whisper_decode_internal(*ctx, *state, state->batch, params.n_threads, false, params.abort_callback, params.abort_callback_user_data)) {
                        WHISPER_LOG_ERROR("%s: failed to decode\n", __func__);
                        return -9;]=] [=[                    // LAB_BEAM_KEEP_WIDTH: once a hypothesis has ended, the attempt is
                    // not given up (lab-analyze's loop watch ends an attempt whose live
                    // beams all loop, which is safe only while nothing else is waiting).
                    if (!whisper_decode_internal(*ctx, *state, state->batch, params.n_threads, false, lab_finished.empty() ? params.abort_callback : nullptr, params.abort_callback_user_data)) {
                        WHISPER_LOG_ERROR("%s: failed to decode\n", __func__);
                        return -9;]=])
lab_edit([=[        mel.data[i] = (mel.data[i] + 4.0)/4.0;
    }
]=] [=[        mel.data[i] = (mel.data[i] + 4.0)/4.0;
    }

    // LAB_MEL_PAD_ZERO: the frames after the audio are 0.0, as faster-whisper
    // pads its normalised features (pad_or_trim), not the clamp level that
    // 30 s of zero samples give.
    {
        const int n_keep = std::min(mel.n_len, n_samples/frame_step + 1);
        for (int j = 0; j < mel.n_mel; ++j) {
            std::fill(mel.data.begin() + (size_t) j*mel.n_len + n_keep, mel.data.begin() + (size_t) (j + 1)*mel.n_len, 0.0f);
        }
    }
]=])
# LAB_MEL_GETTER: a state's log-mel, read by analyzer/tests/whisper_fixes.rs
# to check fix 6 (whisper.cpp has no getter for it). Returns the frames per
# mel bin; bin j's frames are data[j*n_len ..].
string(APPEND _src [=[

// LAB_MEL_GETTER (analyzer/whisper-patch/fixes.cmake): the state's log-mel.
extern "C" int lab_whisper_state_mel(struct whisper_state * state, const float ** data, int * n_mel) {
    *data  = state->mel.data.data();
    *n_mel = state->mel.n_mel;
    return state->mel.n_len;
}
]=])
# A mark lab-analyze reads (whisper_print_system_info) to know the fixes are in.
lab_edit([=[    s += "WHISPER : ";]=] [=[    s += "WHISPER : LAB_WHISPER_FIXES = 6 | ";]=])
file(WRITE "${_file}" "${_src}")
message(STATUS "analyzer/whisper-patch/fixes.cmake: beam search takes the top k at T = 0; the alignment pass computes no logits it does not read; plog at T > 0 of the unscaled distribution; the encoder reused across temperatures; the T = 0 beam stays full; the frames after the audio are 0.0")
