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
# A mark lab-analyze reads (whisper_print_system_info) to know the fixes are in.
lab_edit([=[    s += "WHISPER : ";]=] [=[    s += "WHISPER : LAB_WHISPER_FIXES = 3 | ";]=])
file(WRITE "${_file}" "${_src}")
message(STATUS "analyzer/whisper-patch/fixes.cmake: beam search takes the top k at T = 0; the alignment pass computes no logits it does not read; plog at T > 0 of the unscaled distribution; the encoder reused across temperatures")
