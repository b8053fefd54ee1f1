// The session page's transcript: segments by speaker with click-to-seek
// words, find-in-transcript, the current word following playback (unless the
// user scrolled by hand a moment ago), and the quotes the tag form takes from
// it (the participant's words in a range, or the words the user selected).

import {el, add, offsetWithin} from './dom.js';
import {t} from './i18n.js';
import {fmtMs} from './format.js';

/** page: the session model (session-model.js); the words go into page.state.words. */
export function createTranscript(page, transcriptPanel, transcriptBox) {
  const {state} = page;
  let lastUserScroll = 0;   // when the user last scrolled it by hand
  let currentWord = null;   // the highlighted word

  function render(tr) {
    const find = el('input', {type: 'search', class: 'transcript-find', placeholder: t('transcript.find'), 'aria-label': t('transcript.find')});
    add(transcriptPanel, el('div', {class: 'panel-head'}, el('h2', {id: 'transcript-h'}, t('transcript.title')), find), transcriptBox);
    if (!tr || tr.error) {
      add(transcriptBox, el('p', {class: 'empty'}, tr && tr.error && tr.error.status === 403 ? t('common.no_access') : t('transcript.none')));
      return;
    }
    state.segments = tr.segments || [];
    if (!state.segments.length) {
      add(transcriptBox, el('p', {class: 'empty'}, tr.status && tr.status !== 'ok' ? t('transcript.status', {status: tr.status}) : t('transcript.none')));
      return;
    }
    const frag = document.createDocumentFragment();
    for (const seg of state.segments) {
      const speaker = seg.speaker || 'unknown';
      const text = el('p', {class: 'seg-text'});
      const words = seg.words && seg.words.length ? seg.words : [{start_ms: seg.start_ms, end_ms: seg.end_ms, text: seg.text, confidence: null}];
      words.forEach((w, i) => {
        const span = el('span', {class: ['word', w.confidence != null && w.confidence < 0.5 && 'low-conf'],
          dataset: {startMs: String(w.start_ms), endMs: String(w.end_ms)}}, w.text);
        if (i) add(text, ' ');
        add(text, span);
        state.words.push({start: w.start_ms, end: w.end_ms, speaker: w.speaker || speaker, text: w.text, node: span});
      });
      // Text the analyzer flagged (a cut loop, or heard uncertainly) says so.
      const flag = seg.suspect ? (t('transcript.suspect.' + seg.suspect) === 'transcript.suspect.' + seg.suspect ? 'unknown' : seg.suspect) : null;
      add(frag, el('div', {class: ['seg', 'speaker-' + speaker, flag && 'suspect', flag && 'suspect-' + flag], dataset: {speaker, segId: seg.id ?? ''}},
        el('div', {class: 'seg-head'},
          el('span', {class: 'speaker'}, t('speaker.' + speaker) === 'speaker.' + speaker ? speaker : t('speaker.' + speaker)),
          el('button', {type: 'button', class: 'seg-time', dataset: {startMs: String(seg.start_ms)}}, fmtMs(seg.start_ms)),
          flag && el('span', {class: 'suspect-flag', title: t('transcript.suspect_hint.' + flag)}, t('transcript.suspect.' + flag))),
        text));
    }
    state.words.sort((a, b) => a.start - b.start);
    add(transcriptBox, frag);

    transcriptBox.addEventListener('click', (e) => {
      const target = e.target.closest('.word, .seg-time');
      if (!target) return;
      if (String(window.getSelection()).length > 1) return; // selecting a quote, not seeking
      page.player.seek(Number(target.dataset.startMs));
      lastUserScroll = 0;
    });
    for (const ev of ['wheel', 'touchmove', 'mousedown', 'keydown']) {
      transcriptBox.addEventListener(ev, () => { lastUserScroll = performance.now(); }, {passive: true});
    }
    // Find: highlight matches, Enter jumps to the next one.
    let hits = [], hitIdx = -1;
    find.addEventListener('input', () => {
      for (const w of hits) w.node.classList.remove('hit');
      const q = find.value.trim().toLowerCase();
      hits = q.length < 2 ? [] : state.words.filter((w) => w.text.toLowerCase().includes(q));
      for (const w of hits) w.node.classList.add('hit');
      hitIdx = -1;
    });
    find.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || !hits.length) return;
      e.preventDefault();
      hitIdx = (hitIdx + 1) % hits.length;
      page.player.seek(hits[hitIdx].start);
      lastUserScroll = 0;
    });
  }

  /** Last word starting at or before `now` (binary search). */
  function wordAt(now) {
    const ws = state.words;
    let lo = 0, hi = ws.length - 1, ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ws[mid].start <= now) { ans = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return ans;
  }

  function updateCurrentWord(now) {
    if (!state.words.length) return;
    const i = wordAt(now + 1);
    const w = i >= 0 && now <= state.words[i].end + 300 ? state.words[i] : null;
    if (w === currentWord) return;
    if (currentWord) currentWord.node.classList.remove('current');
    currentWord = w;
    if (!w) return;
    w.node.classList.add('current');
    if (performance.now() - lastUserScroll > 3000) {
      const box = transcriptBox;
      const top = offsetWithin(box, w.node);
      if (top < box.scrollTop + 20 || top > box.scrollTop + box.clientHeight - 40) {
        box.scrollTop = Math.max(0, top - box.clientHeight / 3);
      }
    }
  }

  /** Participant words overlapping [start, end]; falls back to non-moderator words when no channel is labelled participant. */
  function quoteFor(start, end) {
    const hasParticipant = state.words.some((w) => w.speaker === 'participant');
    const ok = (w) => hasParticipant ? w.speaker === 'participant' : w.speaker !== 'moderator';
    return state.words.filter((w) => ok(w) && w.end > start && w.start < end).map((w) => w.text).join(' ');
  }

  /** Range of the transcript words the user selected with the mouse, if any. */
  function selectedWordRange() {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed || !transcriptBox.contains(sel.anchorNode)) return null;
    const picked = state.words.filter((w) => sel.containsNode(w.node, true));
    if (!picked.length) return null;
    return {start: Math.min(...picked.map((w) => w.start)), end: Math.max(...picked.map((w) => w.end)), quote: picked.map((w) => w.text).join(' ')};
  }

  /** Scrolls the transcript to the segment at (or next after) session time ms and marks it. */
  function reveal(ms) {
    const segs = [...transcriptBox.querySelectorAll('.seg')];
    if (!segs.length) return;
    const starts = state.segments.map((s) => Number(s.start_ms));
    let i = state.segments.findIndex((s) => Number(s.start_ms) <= ms && ms < Number(s.end_ms));
    if (i < 0) i = starts.findIndex((s) => s >= ms);
    if (i < 0) i = segs.length - 1;
    const node = segs[i];
    if (!node) return;
    for (const n of transcriptBox.querySelectorAll('.seg.linked')) n.classList.remove('linked');
    node.classList.add('linked');
    transcriptBox.scrollTop = Math.max(0, offsetWithin(transcriptBox, node) - transcriptBox.clientHeight / 3);
    lastUserScroll = performance.now(); // keep the current-word follower from scrolling it away at once
  }

  return {render, updateCurrentWord, reveal, quoteFor, selectedWordRange};
}
