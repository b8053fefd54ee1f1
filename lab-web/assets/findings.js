// Findings (/findings): every tag across sessions as one filterable,
// sortable table, with JSON/CSV export links for the same server filters.

import {el, add, refill} from './dom.js';
import {t, lang} from './i18n.js';
import {fmtMs, dateInputToMs, qs} from './format.js';
import {select, SEVERITY, EMOTIONS, severityBadge, emotionBadge} from './widgets.js';
import {api} from './api.js';
import {loadCategories, categoryLabel} from './labels.js';
import {runPage, setTitle} from './app.js';

runPage(async ({main}) => {
  setTitle(t('findings.title'));
  const categories = await loadCategories();

  const url = new URL(location.href);
  const server = {
    journey: url.searchParams.get('journey') || '',
    study: url.searchParams.get('study') || '',
    segment: url.searchParams.get('segment') || '',
    from: url.searchParams.get('from') || '',
    to: url.searchParams.get('to') || '',
  };
  const local = {category: '', severity: '', emotion: '', q: ''};
  let sort = {key: 'severity', dir: -1};
  let findings = [];
  let journeys = [], studies = [];

  const count = el('span', {class: 'muted count-line'});
  const links = el('div', {class: 'page-actions'});
  const filterForm = el('form', {class: 'filters', id: 'findings-filters'});
  const tableBox = el('section', {class: 'panel', id: 'findings'});
  add(main, el('div', {class: 'page-head'}, el('h1', null, t('findings.title')), count, links), filterForm, tableBox);

  try {
    const [j, s] = await Promise.all([api('GET', '/journeys', null, {quiet: true}), api('GET', '/studies', null, {quiet: true})]);
    journeys = j.journeys || [];
    studies = [...new Set((s.studies || []).map((x) => x.study).filter(Boolean))];
  } catch (_) { /* plain filters */ }

  function apiFilters() {
    return {journey: server.journey, study: server.study, segment: server.segment,
      from: dateInputToMs(server.from, false), to: dateInputToMs(server.to, true)};
  }

  function renderFilters() {
    const field = (label, control) => el('label', {class: 'field'}, el('span', null, label), control);
    const segs = [...new Set(findings.map((f) => f.segment).filter(Boolean))];
    refill(filterForm, 
      field(t('filter.journey'), select('journey', [['', t('filter.all')], ...journeys.map((j) => [j.id, j.title || j.id])], server.journey)),
      field(t('filter.study'), select('study', [['', t('filter.all')], ...studies.map((s) => [s, s])], server.study)),
      field(t('filter.segment'), el('input', {name: 'segment', value: server.segment, list: 'findings-segments', size: 12, placeholder: t('filter.any')})),
      el('datalist', {id: 'findings-segments'}, segs.map((s) => el('option', {value: s}))),
      field(t('filter.from'), el('input', {type: 'date', name: 'from', value: server.from})),
      field(t('filter.to'), el('input', {type: 'date', name: 'to', value: server.to})),
      el('span', {class: 'filter-sep'}),
      field(t('field.category'), select('category', [['', t('filter.all')], ...categories.map((c) => [c.id, lang() === 'en' ? c.en : c.ru])], local.category)),
      field(t('field.severity'), select('severity', [['', t('filter.all')], ...SEVERITY.map((n) => [String(n), `≥ ${n} ${t('severity.' + n)}`])], local.severity)),
      field(t('field.emotion'), select('emotion', [['', t('filter.all')], ...EMOTIONS.map((e) => [e, t('emotion.' + e)])], local.emotion)),
      field(t('findings.search'), el('input', {type: 'search', name: 'q', value: local.q, placeholder: t('findings.search_placeholder'), size: 18})));
  }

  filterForm.addEventListener('submit', (e) => e.preventDefault());
  filterForm.addEventListener('input', (e) => {
    if (e.target.name === 'q') { local.q = e.target.value; renderTable(); }
  });
  filterForm.addEventListener('change', (e) => {
    const n = e.target.name;
    if (n in local) { local[n] = e.target.value; renderTable(); return; }
    if (n in server) {
      server[n] = e.target.value.trim();
      const u = new URL(location.href);
      for (const [k, v] of Object.entries(server)) { if (v) u.searchParams.set(k, v); else u.searchParams.delete(k); }
      history.replaceState(null, '', u);
      load();
    }
  });

  function renderLinks() {
    const f = apiFilters();
    refill(links, 
      el('a', {class: 'btn', id: 'export-json', href: '/api/v1/findings' + qs({...f, format: 'json'})}, t('findings.export_json')),
      el('a', {class: 'btn', id: 'export-csv', href: '/api/v1/findings' + qs({...f, format: 'csv'}), download: 'findings.csv'}, t('findings.export_csv')));
  }

  async function load() {
    renderLinks();
    try {
      const r = await api('GET', '/findings' + qs({...apiFilters(), format: 'json'}));
      findings = Array.isArray(r) ? r : (r.findings || []);
    } catch (_) { findings = []; }
    renderFilters();
    renderTable();
  }

  const COLS = [
    ['participant', 'col.participant'], ['step', 'field.step'], ['start_ms', 'col.time'], ['category', 'field.category'],
    ['severity', 'field.severity'], ['emotion', 'field.emotion'], ['note', 'field.note'], ['quote', 'field.quote'],
    ['segment', 'col.segment'], ['url', 'findings.screen'], ['clip_url', 'tags.clip'],
  ];

  function value(f, key) {
    if (key === 'step') return f.step_title || f.step || '';
    if (key === 'participant') return f.participant || f.session_id || '';
    return f[key];
  }

  function visible() {
    const q = local.q.trim().toLowerCase();
    return findings.filter((f) =>
      (!local.category || f.category === local.category) &&
      (!local.severity || Number(f.severity) >= Number(local.severity)) &&
      (!local.emotion || f.emotion === local.emotion) &&
      (!q || [f.note, f.quote, f.participant, f.step_title, f.step, categoryLabel(f.category, categories)]
        .some((x) => x && String(x).toLowerCase().includes(q))));
  }

  /** The finding in context: its session at the tag's start, the tag highlighted. */
  function sessionHref(f) {
    const start = Number(f.start_ms);
    return '/sessions/' + encodeURIComponent(f.session_id) +
      qs({t: f.start_ms != null && isFinite(start) ? Math.max(0, Math.round(start)) : null, tag: f.id ?? f.tag_id});
  }

  function shortUrl(u) {
    try { const p = new URL(u, location.href); return (p.host !== location.host ? p.host : '') + p.pathname + p.search; } catch (_) { return String(u); }
  }

  function renderTable() {
    const rows = visible().sort((a, b) => {
      const va = value(a, sort.key), vb = value(b, sort.key);
      if (typeof va === 'number' && typeof vb === 'number') return (va - vb) * sort.dir;
      return String(va ?? '').localeCompare(String(vb ?? ''), 'ru') * sort.dir;
    });
    count.textContent = t('findings.count', {n: rows.length, total: findings.length});
    if (!findings.length) { refill(tableBox, el('p', {class: 'empty'}, t('findings.none'))); return; }
    const head = el('tr', null, COLS.map(([key, label]) => el('th', {scope: 'col', class: 'sortable', 'aria-sort': sort.key === key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none'},
      el('button', {type: 'button', class: 'sort-btn', onclick: () => { sort = {key, dir: sort.key === key ? -sort.dir : 1}; renderTable(); }},
        t(label), sort.key === key ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''))));
    const body = el('tbody', null, rows.map((f) => el('tr', {class: 'finding-row', dataset: {id: f.id ?? f.tag_id ?? ''}},
      el('td', null, f.session_id != null ? el('a', {href: sessionHref(f), class: 'finding-session-link'}, f.participant || f.session_id) : (f.participant || '—'),
        f.study ? el('div', {class: 'muted small'}, f.study) : null),
      el('td', null, f.step_title || f.step || '—'),
      el('td', {class: 'nowrap num'}, f.session_id != null
        ? el('a', {href: sessionHref(f), class: 'finding-time-link', title: t('common.seek')}, fmtMs(f.start_ms), '–', fmtMs(f.end_ms))
        : [fmtMs(f.start_ms), '–', fmtMs(f.end_ms)]),
      el('td', null, categoryLabel(f.category, categories)),
      el('td', null, severityBadge(f.severity)),
      el('td', null, f.emotion ? emotionBadge(f.emotion) : '—'),
      el('td', {class: 'text-cell'}, f.note || ''),
      el('td', {class: 'text-cell quote-cell'}, f.quote ? '«' + f.quote + '»' : ''),
      el('td', null, f.segment || '—'),
      el('td', {class: 'url-cell small'}, f.url ? el('span', {title: f.url + (f.selector ? '\n' + f.selector : '')}, shortUrl(f.url)) : '—'),
      el('td', null, f.clip_url ? el('a', {href: f.clip_url, target: '_blank', rel: 'noopener', class: 'clip-link'}, '▶ ', t('tags.clip')) : '—'))));
    refill(tableBox, el('div', {class: 'table-scroll'}, el('table', {class: 'data findings-table'}, el('thead', null, head), body)));
  }

  renderFilters();
  await load();
});
