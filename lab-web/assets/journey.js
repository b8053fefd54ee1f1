// Journey map (/journeys/{id}): the table labs use, steps as columns and
// rows for significance, time against the benchmark, completion, emotions
// and top problems with quotes and clips, aggregated across participants.

import {el, add, refill} from './dom.js';
import {t} from './i18n.js';
import {fmtMs, fmtPercent, fmtNumber, dateInputToMs, qs} from './format.js';
import {select, EMOTIONS, severityBadge} from './widgets.js';
import {api} from './api.js';
import {loadCategories, categoryLabel, detectorLabel} from './labels.js';
import {runPage, setTitle} from './app.js';

runPage(async ({main, id}) => {
  const jid = encodeURIComponent(id);
  const categories = await loadCategories();

  const url = new URL(location.href);
  const filters = {
    study: url.searchParams.get('study') || '',
    segment: url.searchParams.get('segment') || '',
    from: url.searchParams.get('from') || '',
    to: url.searchParams.get('to') || '',
  };

  const titleH = el('h1', null, t('journey.title'));
  const summary = el('p', {class: 'muted journey-summary'});
  const links = el('div', {class: 'page-actions'});
  const filterForm = el('form', {class: 'filters', id: 'journey-filters'});
  const mapBox = el('section', {class: 'panel journey-panel', id: 'journey-map'});
  add(main, el('div', {class: 'page-head'}, el('div', null, el('a', {href: '/', class: 'back-link'}, '← ', t('nav.sessions')), titleH, summary), links),
    filterForm, mapBox, legend());

  // Filter choices: studies of this journey and the segments of its sessions.
  let studyNames = [], segments = [];
  try {
    const [st, ss] = await Promise.all([
      api('GET', '/studies', null, {quiet: true}),
      api('GET', '/sessions', null, {quiet: true}),
    ]);
    const mine = (st.studies || []).filter((s) => String(s.journey_id) === String(id));
    studyNames = [...new Set(mine.map((s) => s.study).filter(Boolean))];
    segments = [...new Set((ss.sessions || []).filter((s) => String(s.journey_id) === String(id)).map((s) => s.segment).filter(Boolean))];
  } catch (_) { /* filters stay free text */ }

  function renderFilters() {
    const field = (label, control) => el('label', {class: 'field'}, el('span', null, label), control);
    const studyOpts = [['', t('filter.all')], ...studyNames.map((s) => [s, s])];
    if (filters.study && !studyNames.includes(filters.study)) studyOpts.push([filters.study, filters.study]);
    const segOpts = [['', t('filter.all')], ...segments.map((s) => [s, s])];
    if (filters.segment && !segments.includes(filters.segment)) segOpts.push([filters.segment, filters.segment]);
    refill(filterForm, 
      field(t('filter.study'), select('study', studyOpts, filters.study)),
      field(t('filter.segment'), select('segment', segOpts, filters.segment)),
      field(t('filter.from'), el('input', {type: 'date', name: 'from', value: filters.from})),
      field(t('filter.to'), el('input', {type: 'date', name: 'to', value: filters.to})),
      el('button', {type: 'button', class: 'btn btn-ghost', onclick: () => { for (const k of Object.keys(filters)) filters[k] = ''; apply(); }}, t('filter.reset')));
  }
  filterForm.addEventListener('change', () => {
    const fd = new FormData(filterForm);
    for (const k of Object.keys(filters)) filters[k] = String(fd.get(k) || '');
    apply();
  });
  filterForm.addEventListener('submit', (e) => e.preventDefault());

  function apiFilters() {
    return {study: filters.study, segment: filters.segment,
      from: dateInputToMs(filters.from, false), to: dateInputToMs(filters.to, true)};
  }

  function apply() {
    const u = new URL(location.href);
    for (const [k, v] of Object.entries(filters)) { if (v) u.searchParams.set(k, v); else u.searchParams.delete(k); }
    history.replaceState(null, '', u);
    renderFilters();
    load();
  }

  function renderLinks() {
    const f = apiFilters();
    refill(links, 
      el('a', {class: 'btn', id: 'report-link', href: `/api/v1/journeys/${jid}/report.html${qs(f)}`, target: '_blank', rel: 'noopener'}, t('journey.report')),
      el('a', {class: 'btn btn-ghost', id: 'findings-json', href: '/api/v1/findings' + qs({journey: id, ...f, format: 'json'})}, t('journey.findings_json')),
      el('a', {class: 'btn btn-ghost', id: 'findings-csv', href: '/api/v1/findings' + qs({journey: id, ...f, format: 'csv'}), download: `findings-${id}.csv`}, t('journey.findings_csv')),
      el('a', {class: 'btn btn-ghost', href: '/findings' + qs({journey: id})}, t('journey.findings_page')));
  }

  async function load() {
    renderLinks();
    let map;
    try {
      map = await api('GET', `/journeys/${jid}/map${qs(apiFilters())}`);
    } catch (e) {
      refill(mapBox, el('p', {class: 'empty'}, e.status === 404 ? t('journey.not_found') : e.message));
      return;
    }
    const j = map.journey || {};
    titleH.textContent = j.title || id;
    setTitle(j.title || t('journey.title'));
    summary.textContent = t('journey.summary', {version: j.version || '—', sessions: map.sessions ?? 0,
      participants: (map.participants || []).length});
    render(map);
  }

  function render(map) {
    const steps = map.steps || [];
    if (!steps.length) { refill(mapBox, el('p', {class: 'empty'}, t('journey.no_steps'))); return; }
    const head = el('tr', null, el('th', {class: 'row-head corner', scope: 'col'}, t('journey.step')),
      steps.map((s, i) => el('th', {class: 'step', scope: 'col', dataset: {step: s.id}},
        el('span', {class: 'step-no'}, String(i + 1)), ' ', el('span', {class: 'step-title'}, s.title || s.id))));
    const maxTime = Math.max(1, ...steps.map((s) => Math.max(s.expected_ms || 0, (s.time && (s.time.p75_ms || s.time.median_ms)) || 0)));
    const row = (cls, label, cell) => el('tr', {class: cls}, el('th', {class: 'row-head', scope: 'row'}, label),
      steps.map((s) => el('td', {class: cls.replace('row-', ''), dataset: {step: s.id}}, cell(s))));
    const table = el('table', {class: 'journey-table'},
      el('thead', null, head),
      el('tbody', null,
        row('row-significance', t('journey.significance'), significance),
        row('row-time', t('journey.time'), (s) => timeCell(s, maxTime)),
        row('row-completion', t('journey.completion'), completion),
        row('row-emotions', t('journey.emotions'), emotions),
        row('row-self-emotions', t('journey.self_emotions'), (s) => emotions({emotions: s.self_emotions}, 'journey.no_answers')),
        row('row-problems', t('journey.problems'), problems),
        row('row-proposed', t('journey.proposed'), proposedCell),
        steps.some((s) => s.arousal) ? row('row-arousal', t('journey.arousal'), arousalCell) : null));
    table.style.setProperty('--steps', String(steps.length));
    const participants = map.participants || [];
    refill(mapBox, el('div', {class: 'table-scroll'}, table),
      participants.length ? el('p', {class: 'muted small participants'}, t('journey.participants'), ': ', participants.join(', ')) : null,
      selfReported(map.self_reported || {}),
      reliability(map.detectors || []));
  }

  /** A mean with its 95 % confidence interval: «5,2 ± 0,8 (n=6)». */
  const meanCi = (m, digits = 1) => m ? `${fmtNumber(m.mean, digits)}${m.ci95 != null ? ' ± ' + fmtNumber(m.ci95, digits) : ''} (n=${m.n})` : '—';

  /** Skin-conductance responses and heart-rate change in the step, across the sessions with sensors. */
  function arousalCell(s) {
    const a = s.arousal;
    if (!a) return el('span', {class: 'muted small'}, '—');
    const lines = [];
    const value = (m, digits, sign) => `${sign && m.mean > 0 ? '+' : ''}${fmtNumber(m.mean, digits)}${m.ci95 != null ? ' ± ' + fmtNumber(m.ci95, digits) : ''}`;
    const e = a.eda_per_min, h = a.hr_change_bpm;
    if (e) lines.push(el('div', {class: 'small', title: t('journey.arousal_eda_title')}, t('journey.arousal_eda', {rate: value(e, 1), amp: a.eda_amplitude_us ? fmtNumber(a.eda_amplitude_us.mean, 2) : '—', n: e.n})));
    if (h) lines.push(el('div', {class: 'small', title: t('journey.arousal_hr_title')}, t('journey.arousal_hr', {change: value(h, 1, true), n: h.n})));
    return lines.length ? lines : el('span', {class: 'muted small'}, '—');
  }

  /** What participants answered: SEQ per task and SUS per participant. */
  function selfReported(r) {
    const tasks = r.tasks || [];
    const sus = r.sus || [];
    if (!tasks.length && !sus.length) return null;
    return el('section', {class: 'self-reported', id: 'self-reported'},
      el('h2', null, t('journey.self_reported')),
      el('p', {class: 'muted small'}, t('journey.self_reported_hint')),
      tasks.length ? el('table', {class: 'data task-table', id: 'task-table'},
        el('thead', null, el('tr', null, el('th', {scope: 'col'}, t('journey.task')), el('th', {scope: 'col'}, t('journey.seq')))),
        el('tbody', null, tasks.map((x) => el('tr', {dataset: {task: x.task}},
          el('th', {scope: 'row'}, x.task), el('td', {class: 'num seq'}, meanCi(x.seq)))))) : null,
      sus.length ? el('table', {class: 'data sus-table', id: 'sus-table'},
        el('thead', null, el('tr', null, el('th', {scope: 'col'}, t('journey.participant')), el('th', {scope: 'col'}, 'SUS'))),
        el('tbody', null, sus.map((x) => el('tr', {dataset: {session: x.session_id}},
          el('th', {scope: 'row'}, x.participant || x.session_id), el('td', {class: 'num'}, fmtNumber(x.score, 1))))),
        el('tfoot', null, el('tr', null, el('th', {scope: 'row'}, t('journey.sus_mean')), el('td', {class: 'num sus-mean'}, meanCi(r.sus_mean))))) : null);
  }

  /** Each detector's confidence against researchers' decisions on its candidates. */
  function reliability(rows) {
    if (!rows.length) return null;
    const share = (a, n) => n ? fmtPercent(a / n) + ` (${a}/${n})` : '—';
    const bins = rows[0].bins || [];
    const binLabel = (b) => `${fmtPercent(b.lower)}–${fmtPercent(b.upper)}`;
    return el('section', {class: 'reliability', id: 'reliability'},
      el('h2', null, t('journey.reliability')),
      el('p', {class: 'muted small'}, t('journey.reliability_hint')),
      el('div', {class: 'table-scroll'}, el('table', {class: 'data reliability-table'},
        el('thead', null, el('tr', null,
          el('th', {scope: 'col'}, t('journey.detector')), el('th', {scope: 'col'}, t('journey.rel_proposed')),
          el('th', {scope: 'col'}, t('journey.rel_accepted')), el('th', {scope: 'col'}, t('journey.rel_mean_confidence')),
          bins.map((b) => el('th', {scope: 'col', class: 'num'}, t('journey.rel_bin', {range: binLabel(b)}))))),
        el('tbody', null, rows.map((r) => el('tr', {dataset: {detector: r.detector}},
          el('th', {scope: 'row'}, detectorLabel(r.detector)),
          el('td', {class: 'num'}, String(r.proposed)),
          el('td', {class: 'num accepted-share'}, share(r.accepted, r.accepted + r.rejected)),
          el('td', {class: 'num'}, r.mean_confidence == null ? '—' : fmtPercent(r.mean_confidence)),
          (r.bins || []).map((b) => el('td', {class: 'num'}, share(b.accepted, b.decided)))))))));
  }

  function significance(s) {
    const n = Math.max(0, Math.min(5, Number(s.significance) || 0));
    const dots = el('span', {class: 'dots', title: t('journey.significance_n', {n}), 'aria-label': t('journey.significance_n', {n})},
      [1, 2, 3, 4, 5].map((i) => el('span', {class: ['dot', i <= n && 'on']})));
    const p = s.self_significance;
    if (!p) return dots;
    return el('div', null, dots,
      el('div', {class: 'small self-significance', title: t('journey.self_significance_title')},
        t('journey.self_significance', {mean: fmtNumber(p.mean, 1), sd: fmtNumber(p.sd, 1), n: p.n})));
  }

  function timeCell(s, maxTime) {
    const tm = s.time || {};
    if (!tm.n) return el('span', {class: 'muted'}, t('journey.no_data'));
    const over = s.expected_ms && tm.median_ms > s.expected_ms;
    const pct = (v) => Math.max(0, Math.min(100, v / maxTime * 100)) + '%';
    const bar = el('div', {class: ['time-bar', over && 'over'], title: t('journey.time_title', {median: fmtMs(tm.median_ms, {noTenths: true}),
      p25: fmtMs(tm.p25_ms, {noTenths: true}), p75: fmtMs(tm.p75_ms, {noTenths: true}), expected: fmtMs(s.expected_ms, {noTenths: true})})},
    el('div', {class: 'iqr', style: {left: pct(tm.p25_ms ?? tm.median_ms), width: `calc(${pct((tm.p75_ms ?? tm.median_ms) - (tm.p25_ms ?? tm.median_ms))} + 2px)`}}),
    el('div', {class: 'median', style: {left: pct(tm.median_ms)}}),
    s.expected_ms ? el('div', {class: 'expected', style: {left: pct(s.expected_ms)}}) : null);
    return el('div', {class: 'time-cell'},
      el('div', null, el('strong', {class: over ? 'over-text' : null}, fmtMs(tm.median_ms, {noTenths: true})),
        ' ', el('span', {class: 'muted small'}, t('journey.norm'), ' ', s.expected_ms ? fmtMs(s.expected_ms, {noTenths: true}) : '—')),
      bar,
      el('div', {class: 'muted small'}, 'P25–P75 ', fmtMs(tm.p25_ms, {noTenths: true}), '–', fmtMs(tm.p75_ms, {noTenths: true}), ' · n=', String(tm.n)));
  }

  function completion(s) {
    const c = s.completion || {};
    if (!c.reached) return el('span', {class: 'muted'}, t('journey.no_data'));
    const rate = c.rate ?? (c.completed / c.reached);
    return el('div', {class: 'completion'},
      el('strong', null, fmtPercent(rate)), ' ', el('span', {class: 'muted small'}, `${c.completed ?? 0} / ${c.reached}`),
      el('div', {class: ['mini-bar', rate < 0.7 && 'low']}, el('div', {style: {width: Math.round(rate * 100) + '%'}})));
  }

  function emotions(s, none = 'journey.no_tags') {
    const e = s.emotions || {};
    const total = (e.positive || 0) + (e.neutral || 0) + (e.negative || 0);
    if (!total) return el('span', {class: 'muted'}, t(none));
    const seg = (k) => e[k] ? el('div', {class: 'emo-' + k, style: {width: (e[k] / total * 100) + '%'}, title: `${t('emotion.' + k)}: ${e[k]}`}) : null;
    return el('div', null,
      el('div', {class: 'emo-bar', 'aria-label': EMOTIONS.map((k) => `${t('emotion.' + k)} ${e[k] || 0}`).join(', ')}, seg('positive'), seg('neutral'), seg('negative')),
      el('div', {class: 'small emo-counts'}, EMOTIONS.map((k) => el('span', {class: 'emo-count emo-text-' + k}, `${t('emotion_short.' + k)} ${e[k] || 0}`))));
  }

  function problems(s) {
    const list = (s.problems || []).slice().sort((a, b) => (b.count - a.count) || (b.max_severity - a.max_severity));
    if (!list.length) return el('span', {class: 'muted'}, t('journey.no_problems'));
    return el('ol', {class: 'problems-list'}, list.slice(0, 3).map((p) => el('li', {class: 'problem', dataset: {category: p.category}},
      el('div', {class: 'problem-head'},
        el('span', {class: 'problem-category'}, categoryLabel(p.category, categories)),
        el('span', {class: 'problem-count', title: t('journey.count')}, '×', String(p.count)),
        severityBadge(p.max_severity)),
      (p.quotes || []).slice(0, 3).map((q) => el('blockquote', {class: 'quote'}, '«', q.text, '» ',
        q.session_id != null ? el('a', {href: quoteHref(q), class: 'participant-link', dataset: {tagId: q.tag_id ?? ''}}, '— ', q.participant || q.session_id)
          : el('span', {class: 'muted'}, '— ', q.participant || ''))),
      (p.clips || []).length ? el('div', {class: 'clips'}, (p.clips || []).slice(0, 3).map((c, i) =>
        el('a', {href: c, target: '_blank', rel: 'noopener', class: 'clip-link'}, '▶ ', t('journey.clip_n', {n: i + 1})))) : null)));
  }

  /** Friction the analyzer proposed (candidates not rejected), per detector, with the participants. */
  function proposedCell(s) {
    const list = s.proposed || [];
    if (!list.length) return el('span', {class: 'muted'}, t('journey.no_proposed'));
    return el('ul', {class: 'proposed-list'}, list.map((p) => el('li', {class: 'proposed', dataset: {detector: p.detector}},
      el('span', {class: 'proposed-detector'}, t('detector.' + p.detector)),
      ' ', el('span', {class: 'problem-count', title: t('journey.count')}, '×', String(p.count)),
      p.accepted ? el('span', {class: 'muted small'}, ' · ', t('journey.accepted_n', {n: p.accepted})) : null,
      el('div', {class: 'small'}, (p.sessions || []).map((r, i) => [i ? ', ' : '',
        el('a', {href: '/sessions/' + encodeURIComponent(r.session_id) + qs({t: Math.round(r.start_ms)}), class: 'participant-link'}, r.participant || r.session_id)])))));
  }

  /** /sessions/{id}?t={start_ms}&tag={tag_id}: the quote's moment in its session. */
  function quoteHref(q) {
    const start = q.start_ms;
    return '/sessions/' + encodeURIComponent(q.session_id) +
      qs({t: start != null && isFinite(start) ? Math.round(start) : null, tag: q.tag_id});
  }

  function legend() {
    return el('div', {class: 'legend muted small'},
      el('span', null, el('span', {class: 'legend-swatch iqr'}), ' P25–P75'),
      el('span', null, el('span', {class: 'legend-swatch median'}), ' ', t('journey.median')),
      el('span', null, el('span', {class: 'legend-swatch expected'}), ' ', t('journey.expected')),
      el('span', null, el('span', {class: 'legend-swatch over'}), ' ', t('journey.over')));
  }

  renderFilters();
  await load();
});
