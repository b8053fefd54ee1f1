// Transcript search (/search?q=...&journey=...): finds Russian word forms
// across every session's transcript (the server stems), groups the hits by
// session and links each one to its moment on the session page
// (/sessions/{id}?t={start_ms}). The query lives in the URL, so results are
// linkable and the back button walks through earlier searches.
//
// Security: hit texts are transcripts, i.e. untrusted. They reach the DOM as
// text nodes and <mark> elements built with el(), never through innerHTML.

import {el, add, refill} from './dom.js';
import {t} from './i18n.js';
import {fmtMs, fmtDate, fmtNumber, qs} from './format.js';
import {select} from './widgets.js';
import {api} from './api.js';
import {can} from './roles.js';
import {runPage, setTitle} from './app.js';

runPage(async ({main}) => {
  setTitle(t('search.title'));

  const input = el('input', {type: 'search', name: 'q', id: 'search-q', class: 'search-q', autocomplete: 'off',
    placeholder: t('search.placeholder'), 'aria-label': t('search.label'), size: 40});
  const journeySel = select('journey', [['', t('filter.all')]], '', {id: 'search-journey'});
  const form = el('form', {class: 'filters search-form', id: 'search-form', role: 'search'},
    el('label', {class: 'field search-field'}, el('span', null, t('search.label')), input),
    el('label', {class: 'field'}, el('span', null, t('filter.life_situation')), journeySel),
    el('button', {type: 'submit', class: 'btn btn-primary', id: 'search-submit'}, t('search.submit')),
    el('span', {class: 'muted small search-hint'}, t('search.hint')));
  const summary = el('span', {class: 'muted count-line', id: 'search-summary', 'aria-live': 'polite'});
  const results = el('section', {class: 'panel search-results', id: 'search-results', 'aria-labelledby': 'search-h'});
  add(main, el('div', {class: 'page-head'}, el('h1', {id: 'search-h'}, t('search.title')), summary), form, results);

  /** The one message shown instead of results: idle | loading | empty | error | forbidden. */
  function showState(kind, text, extra) {
    summary.textContent = '';
    results.dataset.state = kind;
    refill(results, el('div', {class: ['search-state', 'search-state-' + kind], id: 'search-state', dataset: {state: kind},
      role: kind === 'error' || kind === 'forbidden' ? 'alert' : 'status'}, el('p', null, text), extra || null));
  }

  // Transcripts are raw recordings: the server answers 403 to viewers. Say so up front.
  if (!can('raw')) {
    form.hidden = true;
    showState('forbidden', t('search.forbidden'));
    return;
  }

  // Session facts (date) and life situations for the filter; the page works without them.
  const sessionsById = new Map();
  const [journeysResp, sessionsResp] = await Promise.all([
    api('GET', '/journeys', null, {quiet: true}).catch(() => null),
    api('GET', '/sessions', null, {quiet: true}).catch(() => null),
  ]);
  for (const s of (sessionsResp && sessionsResp.sessions) || []) sessionsById.set(String(s.id), s);
  const journeys = (journeysResp && journeysResp.journeys) || [];

  function journeyTitle(s) {
    const j = s.journey_id != null && journeys.find((x) => String(x.id) === String(s.journey_id));
    return (j && j.title) || s.life_situation || '';
  }

  function fillJourneys(selected) {
    const opts = [['', t('filter.all')], ...journeys.map((j) => [j.id, j.title || j.id])];
    if (selected && !journeys.some((j) => String(j.id) === selected)) opts.push([selected, selected]);
    refill(journeySel, opts.map(([v, label]) => el('option', {value: v, selected: String(v) === selected}, label)));
  }

  function fromUrl() {
    const u = new URL(location.href);
    return {q: (u.searchParams.get('q') || '').trim(), journey: u.searchParams.get('journey') || ''};
  }

  // ---------- URL <-> form ----------
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const want = {q: input.value.trim(), journey: journeySel.value};
    const have = fromUrl();
    // A new query is a new history entry (back returns to the previous one); the same one just runs again.
    if (want.q !== have.q || want.journey !== have.journey) history.pushState(null, '', '/search' + qs(want));
    run(want);
  });
  journeySel.addEventListener('change', () => { if (input.value.trim()) form.requestSubmit(); });
  window.addEventListener('popstate', () => { const s = fromUrl(); syncForm(s); run(s); });

  function syncForm(s) {
    input.value = s.q;
    fillJourneys(s.journey);
  }

  // ---------- search ----------
  let seq = 0;
  async function run({q, journey}) {
    const mine = ++seq;
    setTitle(q ? `${q} — ${t('search.title')}` : t('search.title'));
    if (!q) { showState('idle', t('search.idle')); return; }
    showState('loading', t('search.loading'));
    let r;
    try {
      r = await api('GET', '/search' + qs({q, journey}), null, {quiet: true});
    } catch (e) {
      if (mine !== seq) return;
      if (e.status === 403) { form.hidden = true; showState('forbidden', t('search.forbidden')); return; }
      showState('error', t('search.error', {message: e.message || String(e)}),
        el('button', {type: 'button', class: 'btn btn-small', id: 'search-retry', onclick: () => run({q, journey})}, t('search.retry')));
      return;
    }
    if (mine !== seq) return; // an older answer arriving after a newer query
    render(q, r || {});
  }

  function render(q, r) {
    const hits = Array.isArray(r.hits) ? r.hits : [];
    const took = Number(r.took_ms);
    if (!hits.length) {
      showState('empty', t(queryWords(q).length > 1 ? 'search.none_all' : 'search.none', {q}));
      summary.textContent = t('search.took', {ms: fmtNumber(took, took < 10 ? 1 : 0)});
      return;
    }
    // Group by session, keeping the server's order (newest sessions first, hits by time).
    const groups = new Map();
    for (const h of hits) {
      const k = String(h.session_id);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(h);
    }
    const terms = queryWords(q);
    results.dataset.state = 'results';
    refill(results, [...groups].map(([sessionId, list]) => group(sessionId, list, terms)));
    summary.textContent = [
      t('search.summary', {n: hits.length, sessions: groups.size}),
      hits.length >= 200 ? t('search.limited', {n: hits.length}) : null,
      isFinite(took) ? t('search.took', {ms: fmtNumber(took, took < 10 ? 1 : 0)}) : null,
    ].filter(Boolean).join(' · ');
    summary.dataset.hits = String(hits.length);
    summary.dataset.tookMs = isFinite(took) ? String(took) : '';
  }

  function group(sessionId, list, terms) {
    const s = sessionsById.get(sessionId);
    const participant = list[0].participant || (s && s.participant) || sessionId;
    const href = '/sessions/' + encodeURIComponent(sessionId);
    return el('article', {class: 'search-group', dataset: {sessionId}},
      el('header', {class: 'panel-head search-group-head'},
        el('a', {href, class: 'session-link search-session-link'}, participant),
        s && s.started_at ? el('span', {class: 'muted small search-date'}, fmtDate(s.started_at)) : null,
        s && (s.study || s.life_situation) ? el('span', {class: 'muted small search-study'}, [s.study, journeyTitle(s)].filter(Boolean).join(' · ')) : null,
        el('span', {class: 'spacer'}),
        el('span', {class: 'count-pill search-count', title: t('search.hits_n', {n: list.length})}, String(list.length))),
      el('ol', {class: 'search-hits'}, list.map((h) => hitItem(sessionId, h, terms))));
  }

  function hitItem(sessionId, h, terms) {
    const start = Number(h.start_ms) || 0;
    const href = `/sessions/${encodeURIComponent(sessionId)}?t=${Math.max(0, Math.round(start))}`;
    const speaker = h.speaker || 'unknown';
    const label = t('speaker.' + speaker);
    return el('li', {class: ['search-hit', 'speaker-' + speaker], dataset: {sessionId, startMs: String(start), segmentId: h.segment_id ?? ''}},
      el('a', {href, class: 'hit-link', title: t('search.open')},
        el('span', {class: 'hit-time'}, fmtMs(start, {noTenths: true})),
        el('span', {class: 'hit-speaker'}, label === 'speaker.' + speaker ? speaker : label),
        el('span', {class: 'hit-text'}, highlight(h.text || '', terms))));
  }

  // ---------- highlighting ----------
  // The server matches Snowball stems; here an approximation is enough to show
  // where: a word matches a query word when both, lower-cased with ё -> е,
  // share a prefix of at least 4 letters (and of all but the last 3 letters of
  // the shorter one), or are equal when either is shorter than 4 letters.
  const WORD = /[\p{L}\p{N}]+/gu;
  function norm(w) { return w.toLowerCase().replace(/ё/g, 'е'); }
  function queryWords(q) { return [...new Set((String(q).match(WORD) || []).map(norm))]; }
  function commonPrefix(a, b) {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  }
  function matches(word, terms) {
    const w = norm(word);
    return terms.some((q) => {
      if (w.length < 4 || q.length < 4) return w === q;
      return commonPrefix(w, q) >= Math.max(4, Math.min(w.length, q.length) - 3);
    });
  }
  /** Text nodes and <mark> elements for `text`, the words matching `terms` marked. */
  function highlight(text, terms) {
    const out = [];
    let last = 0;
    for (const m of String(text).matchAll(WORD)) {
      if (!matches(m[0], terms)) continue;
      if (m.index > last) out.push(text.slice(last, m.index));
      out.push(el('mark', {class: 'hit-mark'}, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  // ---------- start ----------
  const initial = fromUrl();
  syncForm(initial);
  if (!initial.q) input.focus();
  await run(initial);
});
