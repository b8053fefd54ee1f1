// Session review page (/sessions/{id}): synchronised screen + camera
// playback, transcript with click-to-seek, a canvas timeline with lanes,
// friction candidates (accept / reject), tags (form, list, history, clips)
// and keyboard-driven tagging.
//
// This module lays the page out, loads its data, creates the parts and wires
// them together through the session model (session-model.js): each part is
// a module that imports only shared helpers, and reaches the other parts
// through the model at event time, so no part imports another.
//
// Time: everything here is session milliseconds (see session-player.js).

import {el, add} from './dom.js';
import {t} from './i18n.js';
import {toast} from './widgets.js';
import {api} from './api.js';
import {watchJobs} from './jobs.js';
import {loadCategories} from './labels.js';
import {runPage, setTitle} from './app.js';
import {createModel} from './session-model.js';
import {renderHead, analysisText} from './session-head.js';
import {createPlayer, unavailableReason} from './session-player.js';
import {createTranscript} from './session-transcript.js';
import {createTimeline} from './session-timeline.js';
import {createCandidates} from './session-candidates.js';
import {createTags} from './session-tags.js';
import {createTagForm} from './session-tag-form.js';
import {bindKeys} from './session-keys.js';

runPage(async ({main, id}) => {
  const sid = encodeURIComponent(id);
  const detail = await api('GET', `/sessions/${sid}`);
  const categories = await loadCategories();
  setTitle(t('session.title', {participant: detail.participant || id}));
  const page = createModel({id, detail, categories});
  const {state, canRaw} = page;

  // ================= layout =================
  const head = el('section', {class: 'session-head', id: 'session-head'});
  const playerCol = el('div', {class: 'player-col'});
  const transcriptBox = el('div', {id: 'transcript', class: 'transcript', tabindex: '0', 'aria-live': 'off'});
  const transcriptPanel = el('section', {class: 'panel transcript-panel', 'aria-labelledby': 'transcript-h'});
  const candidatesBox = el('div', {id: 'candidates', class: 'candidates'});
  const candidatesPanel = el('section', {class: 'panel candidates-panel', 'aria-labelledby': 'candidates-h'});
  const timelineRoot = el('section', {class: 'panel timeline-panel', 'aria-label': t('timeline.title')});
  const tagsBox = el('div', {id: 'tags', class: 'tags'});
  const tagsPanel = el('section', {class: 'panel tags-panel', 'aria-labelledby': 'tags-h'});

  main.classList.add('main-session');
  add(main, head,
    el('div', {class: 'review-grid'}, playerCol,
      el('div', {class: 'side-col'}, transcriptPanel, candidatesPanel)),
    timelineRoot, tagsPanel);

  renderHead(page, head);

  // ================= player =================
  const player = createPlayer(playerCol, {
    media: detail.media || {},
    durationMs: state.durationMs,
    unavailable: unavailableReason(detail, canRaw),
    onNewTag: page.canTag ? () => page.tagForm.openFromMarks() : null,
  });
  page.player = player;

  // ================= data =================
  const [transcript, timeline, tagsResp, sensorsResp] = await Promise.all([
    canRaw ? api('GET', `/sessions/${sid}/transcript`, null, {quiet: [403, 404]}).catch((e) => ({error: e})) : Promise.resolve({error: {status: 403}}),
    canRaw ? api('GET', `/sessions/${sid}/timeline`, null, {quiet: [403, 404]}).catch((e) => ({error: e})) : Promise.resolve({error: {status: 403}}),
    api('GET', `/sessions/${sid}/tags`, null, {quiet: [403, 404]}).catch((e) => ({error: e})),
    canRaw ? api('GET', `/sessions/${sid}/sensors`, null, {quiet: [403, 404]}).catch(() => null) : Promise.resolve(null),
  ]);
  page.timelineData = timeline;

  if (timeline && !timeline.error) {
    state.steps = timeline.steps || [];
    state.candidates = timeline.candidates || [];
    if (!state.durationMs && timeline.duration_ms) { state.durationMs = timeline.duration_ms; player.setDuration(state.durationMs); }
  }
  state.tags = (tagsResp && !tagsResp.error ? tagsResp.tags : (timeline && timeline.tags)) || [];

  page.transcript = createTranscript(page, transcriptPanel, transcriptBox);
  page.transcript.render(transcript);
  const tl = createTimeline(page, timelineRoot, timeline, (sensorsResp && sensorsResp.lanes) || []);
  page.tl = tl;
  page.candidates = createCandidates(page, candidatesPanel, candidatesBox);
  page.tags = createTags(page, tagsPanel, tagsBox);
  page.candidates.render();
  page.tags.render();
  page.tagForm = createTagForm(page);

  // One loop drives the playhead, the current word and the clock display.
  player.onTick((now) => {
    page.transcript.updateCurrentWord(now);
    tl.setPlayhead(now, !player.paused());
  });
  player.onSeek((ms) => tl.reveal(ms));
  player.onDuration((ms) => { state.durationMs = ms; tl.setDuration(ms); });

  openDeepLink();
  bindKeys(page);

  // ================= live updates =================
  watchJobs((job) => {
    if (job.kind === 'clip' || state.clipJobs.has(String(job.id))) { page.tags.onClipJob(job); return; }
    if (String(job.session_id) !== String(id)) return;
    const node = document.getElementById('analysis-status');
    if (node) node.textContent = analysisText(job);
    if (job.status === 'done') toast(t('session.analysis_done'), 'ok', 8000);
  });

  // ================= deep link =================
  /**
   * /sessions/{id}?t=MS&tag=ID (from search hits, the journey map, findings):
   * seek to session time MS once the media metadata is loaded, scroll the
   * transcript there, and highlight tag ID (seeking to its start when no t).
   */
  function openDeepLink() {
    const params = new URL(location.href).searchParams;
    const rawT = params.get('t');
    let at = rawT !== null && /^\d+(\.\d+)?$/.test(rawT.trim()) ? Number(rawT) : null;
    const tagId = params.get('tag');
    const tag = tagId ? state.tags.find((g) => String(g.id) === tagId) : null;
    if (tag) {
      const node = tagsBox.querySelector(`.tag[data-id="${CSS.escape(String(tag.id))}"]`);
      page.tags.select(tag.id, false);
      if (node) {
        node.classList.add('linked');
        node.scrollIntoView({block: 'nearest'});
      }
      if (at === null) at = Number(tag.start_ms);
    }
    if (at === null || !isFinite(at)) return;
    player.ready(() => {
      player.seek(at);
      page.transcript.reveal(at);
    });
  }
});
