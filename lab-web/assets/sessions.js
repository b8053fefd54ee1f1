// Sessions page (/): studies and life situations, then the filtered session
// list with live analysis progress (SSE), analysis/import actions for
// operators and an editable segment (persona) label.

import {el, add, refill} from './dom.js';
import {t} from './i18n.js';
import {fmtMs, fmtDate, fmtPercent, dateInputToMs, qs} from './format.js';
import {toast, select, progressBar} from './widgets.js';
import {api} from './api.js';
import {can} from './roles.js';
import {watchJobs, ACTIVE_JOB} from './jobs.js';
import {runPage, setTitle} from './app.js';

runPage(async ({main}) => {
  setTitle(t('sessions.title'));

  const url = new URL(location.href);
  const filters = {
    study: url.searchParams.get('study') || '',
    life_situation: url.searchParams.get('life_situation') || '',
    segment: url.searchParams.get('segment') || '',
    from: url.searchParams.get('from') || '',   // yyyy-mm-dd (date input)
    to: url.searchParams.get('to') || '',
  };

  let studies = [];
  let sessions = [];
  const rows = new Map(); // session id -> <tr>

  // ---------- layout ----------
  const studiesBox = el('section', {class: 'panel studies', id: 'studies', 'aria-labelledby': 'studies-h'},
    el('h2', {id: 'studies-h'}, t('sessions.studies')));
  const filterForm = el('form', {class: 'filters', id: 'session-filters'});
  const tableBox = el('section', {class: 'panel', id: 'sessions-panel'});
  const countLine = el('span', {class: 'muted count-line'});

  const headRight = el('div', {class: 'page-actions'});
  if (can('jobs')) add(headRight, importForm());

  add(main, 
    el('div', {class: 'page-head'}, el('h1', null, t('sessions.title')), countLine, headRight),
    studiesBox, filterForm, tableBox);

  function importForm() {
    const input = el('input', {name: 'path', id: 'import-path', placeholder: t('sessions.import_placeholder'),
      'aria-label': t('sessions.import_path'), size: 34});
    const form = el('form', {class: 'inline-form', id: 'import-form'}, input,
      el('button', {type: 'submit', class: 'btn'}, t('sessions.import')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const path = input.value.trim();
      if (!path) { input.focus(); return; }
      try {
        const r = await api('POST', '/imports', {path});
        toast(r.imported ? t('sessions.imported', {id: r.session_id}) : t('sessions.already_imported', {id: r.session_id}), 'ok');
        input.value = '';
        await loadSessions();
      } catch (_) { /* toast shown */ }
    });
    return form;
  }

  // ---------- studies ----------
  async function loadStudies() {
    try {
      const r = await api('GET', '/studies');
      studies = r.studies || [];
    } catch (_) { studies = []; }
    renderStudies();
    renderFilters();
  }

  function renderStudies() {
    const list = el('div', {class: 'study-cards'});
    if (!studies.length) add(list, el('p', {class: 'empty'}, t('sessions.no_studies')));
    for (const s of studies) {
      const active = filters.study === (s.study || '') && filters.life_situation === (s.life_situation || '');
      const card = el('div', {class: ['study-card', active && 'active']},
        el('button', {type: 'button', class: 'study-pick', title: t('sessions.filter_by_study'),
          onclick: () => {
            if (active) { filters.study = ''; filters.life_situation = ''; } else { filters.study = s.study || ''; filters.life_situation = s.life_situation || ''; }
            applyFilters();
          }},
        el('span', {class: 'study-name'}, s.study || t('sessions.no_study')),
        el('span', {class: 'study-ls'}, s.journey_title || s.life_situation || '—'),
        el('span', {class: 'study-count'}, t('sessions.n_sessions', {n: s.sessions ?? 0}))),
        s.journey_id ? el('a', {class: 'journey-link', href: '/journeys/' + encodeURIComponent(s.journey_id)}, t('sessions.journey_map')) : null);
      add(list, card);
    }
    const h = studiesBox.querySelector('h2');
    refill(studiesBox, h, list);
  }

  // ---------- filters ----------
  function renderFilters() {
    const uniq = (xs) => [...new Set(xs.filter(Boolean))].sort((a, b) => a.localeCompare(b, 'ru'));
    const studyOpts = [['', t('filter.all')], ...uniq(studies.map((s) => s.study)).map((v) => [v, v])];
    const lsOpts = [['', t('filter.all')], ...uniq(studies.map((s) => s.life_situation)).map((v) => {
      const st = studies.find((s) => s.life_situation === v);
      return [v, (st && st.journey_title) || v];
    })];
    const segs = uniq(sessions.map((s) => s.segment).concat(filters.segment ? [filters.segment] : []));
    const segList = el('datalist', {id: 'segment-options'}, segs.map((v) => el('option', {value: v})));
    const field = (label, control) => el('label', {class: 'field'}, el('span', null, label), control);
    refill(filterForm, 
      field(t('filter.study'), select('study', studyOpts, filters.study)),
      field(t('filter.life_situation'), select('life_situation', lsOpts, filters.life_situation)),
      field(t('filter.segment'), el('input', {name: 'segment', value: filters.segment, list: 'segment-options', placeholder: t('filter.any'), size: 14})),
      segList,
      field(t('filter.from'), el('input', {type: 'date', name: 'from', value: filters.from})),
      field(t('filter.to'), el('input', {type: 'date', name: 'to', value: filters.to})),
      el('button', {type: 'submit', class: 'btn'}, t('filter.apply')),
      el('button', {type: 'button', class: 'btn btn-ghost', onclick: () => {
        for (const k of Object.keys(filters)) filters[k] = '';
        applyFilters();
      }}, t('filter.reset')));
  }
  filterForm.addEventListener('change', (e) => { if (e.target.tagName === 'SELECT' || e.target.type === 'date') readAndApply(); });
  filterForm.addEventListener('submit', (e) => { e.preventDefault(); readAndApply(); });
  function readAndApply() {
    const fd = new FormData(filterForm);
    for (const k of Object.keys(filters)) filters[k] = (fd.get(k) || '').toString().trim();
    applyFilters();
  }
  function applyFilters() {
    const u = new URL(location.href);
    for (const [k, v] of Object.entries(filters)) { if (v) u.searchParams.set(k, v); else u.searchParams.delete(k); }
    history.replaceState(null, '', u);
    renderStudies();
    loadSessions();
  }

  // ---------- sessions ----------
  async function loadSessions() {
    const q = qs({
      study: filters.study, life_situation: filters.life_situation, segment: filters.segment,
      from: dateInputToMs(filters.from, false), to: dateInputToMs(filters.to, true),
    });
    try {
      const r = await api('GET', '/sessions' + q);
      sessions = r.sessions || [];
    } catch (_) { sessions = []; }
    renderTable();
    renderFilters();
  }

  function renderTable() {
    rows.clear();
    countLine.textContent = t('sessions.count', {n: sessions.length});
    if (!sessions.length) {
      refill(tableBox, el('p', {class: 'empty'}, t('sessions.none')));
      return;
    }
    const head = el('tr', null, ['col.participant', 'col.date', 'col.study', 'col.station', 'col.duration',
      'col.recording', 'col.analysis', 'col.candidates', 'col.tags', 'col.segment', 'col.journey']
      .map((k) => el('th', {scope: 'col'}, t(k))), can('jobs') ? el('th', {scope: 'col'}, t('col.actions')) : null);
    const body = el('tbody');
    const sorted = [...sessions].sort((a, b) => (b.started_at || 0) - (a.started_at || 0));
    for (const s of sorted) { const tr = row(s); rows.set(String(s.id), tr); add(body, tr); }
    refill(tableBox, el('div', {class: 'table-scroll'},
      el('table', {class: 'data sessions-table', id: 'sessions-table'}, el('thead', null, head), body)));
  }

  function row(s) {
    const href = '/sessions/' + encodeURIComponent(s.id);
    const tr = el('tr', {class: ['session-row', s.withdrawn && 'withdrawn'], dataset: {id: s.id}});
    add(tr, 
      el('td', {class: 'participant'}, el('a', {href, class: 'session-link'}, s.participant || s.id),
        s.withdrawn ? el('span', {class: 'badge badge-muted'}, t('sessions.withdrawn')) : null),
      el('td', {class: 'nowrap'}, fmtDate(s.started_at)),
      el('td', {class: 'study-cell'}, el('div', null, s.study || '—'), el('div', {class: 'muted small'}, s.life_situation || '')),
      el('td', null, s.station || '—'),
      el('td', {class: 'num nowrap'}, fmtMs(s.duration_ms, {noTenths: true})),
      el('td', null, recordingBadge(s.status)),
      el('td', {class: 'analysis-cell'}, analysisCell(s)),
      el('td', {class: 'num'}, s.candidates_total
        ? el('span', {title: t('sessions.candidates_title')}, el('strong', null, String(s.candidates_open ?? 0)), ' / ', String(s.candidates_total))
        : '—'),
      el('td', {class: 'num'}, String(tagCount(s.tags))),
      el('td', {class: 'segment-cell'}, segmentCell(s)),
      el('td', null, s.journey_id ? el('a', {href: '/journeys/' + encodeURIComponent(s.journey_id), class: 'journey-link'}, t('sessions.journey_map')) : '—'),
      can('jobs') ? el('td', {class: 'actions nowrap'}, jobActions(s)) : null);
    // The whole row opens the session, except clicks on its own controls.
    tr.addEventListener('click', (e) => {
      if (e.target.closest('a, button, input, select, form, label')) return;
      if (window.getSelection && String(window.getSelection())) return;
      location.assign(href);
    });
    return tr;
  }

  function tagCount(tags) {
    if (Array.isArray(tags)) return tags.length;
    return tags ?? 0;
  }

  function recordingBadge(status) {
    const cls = {complete: 'badge-ok', interrupted: 'badge-warn', recovered: 'badge-warn', recording: 'badge-info'}[status] || 'badge-muted';
    return el('span', {class: ['badge', cls]}, t('recording.' + (status || 'unknown')));
  }

  function analysisCell(s) {
    const a = s.analysis || {status: 'none'};
    const box = el('div', {class: 'analysis', dataset: {status: a.status || 'none'}});
    add(box, el('span', {class: ['badge', 'badge-analysis-' + (a.status || 'none')]}, t('analysis.' + (a.status || 'none'))));
    if (ACTIVE_JOB.has(a.status)) {
      add(box, progressBar(a), el('span', {class: 'muted small'}, [a.stage, a.progress != null ? fmtPercent(a.progress) : null].filter(Boolean).join(' · ')));
    } else if (a.status === 'failed' && a.message) {
      add(box, el('span', {class: 'small error-text', title: a.message}, a.message));
    }
    return box;
  }

  function jobActions(s) {
    const a = s.analysis || {};
    const out = [];
    if (ACTIVE_JOB.has(a.status) && a.job_id != null) {
      out.push(el('button', {type: 'button', class: 'btn btn-small', onclick: () => jobAction('cancel', a.job_id)}, t('jobs.cancel')));
    } else {
      out.push(el('button', {type: 'button', class: 'btn btn-small analyze', onclick: () => analyze(s.id)}, t('sessions.analyze')));
      if ((a.status === 'failed' || a.status === 'cancelled') && a.job_id != null) {
        out.push(el('button', {type: 'button', class: 'btn btn-small btn-ghost', onclick: () => jobAction('retry', a.job_id)}, t('jobs.retry')));
      }
    }
    return out;
  }

  async function analyze(id) {
    try {
      const r = await api('POST', `/sessions/${encodeURIComponent(id)}/analyze`, {});
      const s = sessions.find((x) => String(x.id) === String(id));
      if (s) { s.analysis = {status: 'queued', progress: 0, stage: null, message: null, job_id: r.job_id}; replaceRow(s); }
    } catch (_) { /* toast shown */ }
  }

  async function jobAction(kind, jobId) {
    try {
      const r = await api('POST', `/jobs/${encodeURIComponent(jobId)}/${kind}`, {});
      if (kind === 'retry' && r && r.job_id != null) {
        const s = sessions.find((x) => x.analysis && String(x.analysis.job_id) === String(jobId));
        if (s) { s.analysis = {...s.analysis, status: 'queued', progress: 0, job_id: r.job_id, message: null}; replaceRow(s); }
      } else if (r && r.id != null) {
        onJob(r);
      }
    } catch (_) { /* toast shown */ }
  }

  function segmentCell(s) {
    const label = el('span', {class: 'segment-label'}, s.segment || '—');
    if (!can('edit_segment')) return label;
    const edit = el('button', {type: 'button', class: 'btn btn-icon edit-segment', title: t('sessions.edit_segment'),
      'aria-label': t('sessions.edit_segment')}, '✎');
    const wrap = el('div', {class: 'segment-edit'}, label, edit);
    edit.addEventListener('click', () => {
      const input = el('input', {name: 'segment', value: s.segment || '', list: 'segment-options', size: 12,
        'aria-label': t('col.segment')});
      const save = async () => {
        const value = input.value.trim();
        if (value === (s.segment || '')) { cancel(); return; }
        try {
          const r = await api('PATCH', `/sessions/${encodeURIComponent(s.id)}`, {segment: value || null});
          Object.assign(s, r && r.id != null ? r : {segment: value});
          replaceRow(s);
          renderFilters();
        } catch (_) { input.focus(); }
      };
      const cancel = () => { refill(wrap, label, edit); };
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') { e.preventDefault(); save(); }
        if (e.key === 'Escape') { e.preventDefault(); cancel(); }
      });
      refill(wrap, input,
        el('button', {type: 'button', class: 'btn btn-small', onclick: save}, t('common.save')),
        el('button', {type: 'button', class: 'btn btn-small btn-ghost', onclick: cancel}, '×'));
      input.focus();
      input.select();
    });
    return wrap;
  }

  function replaceRow(s) {
    const old = rows.get(String(s.id));
    if (!old) return;
    const tr = row(s);
    old.replaceWith(tr);
    rows.set(String(s.id), tr);
  }

  // ---------- live job updates ----------
  let reloadTimer = null;
  function onJob(job) {
    if (job.kind && job.kind !== 'analyze') return;
    const s = sessions.find((x) => String(x.id) === String(job.session_id));
    if (!s) return;
    s.analysis = {status: job.status, progress: job.progress, stage: job.stage, message: job.message, job_id: job.id};
    replaceRow(s);
    // A finished analysis changes candidate counts: fetch the list again (debounced).
    if (job.status === 'done') {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(loadSessions, 800);
    }
  }
  watchJobs(onJob);

  await loadStudies();
  await loadSessions();
});
