// The session page's head: participant, facts, QA summary (the analyzer's QA report),
// exports, the analysis status and the admin actions (re-analyse, withdraw).

import {el, add, refill} from './dom.js';
import {t} from './i18n.js';
import {fmtMs, fmtDate, fmtNumber, fmtPercent} from './format.js';
import {toast, modal} from './widgets.js';
import {api} from './api.js';
import {can} from './roles.js';
import {ACTIVE_JOB} from './jobs.js';
import {showHelp} from './session-keys.js';

/** Renders the head of page (the session model) into head. */
export function renderHead(page, head) {
  const {detail, id, sid, canRaw} = page;
  const d = detail;
  const a = d.analysis || {status: 'none'};
  const facts = el('div', {class: 'facts'},
    fact(t('col.date'), fmtDate(d.started_at)),
    fact(t('col.station'), d.station || '—'),
    fact(t('col.duration'), fmtMs(d.duration_ms, {noTenths: true})),
    d.moderator ? fact(t('session.moderator'), d.moderator) : null,
    d.segment ? fact(t('col.segment'), d.segment) : null,
    fact(t('col.recording'), el('span', {class: 'badge'}, t('recording.' + (d.status || 'unknown')))),
    fact(t('col.analysis'), el('span', {id: 'analysis-status'}, analysisText(a))));
  const links = el('div', {class: 'head-links'});
  if (d.journey || d.journey_id) {
    const jid = (d.journey && d.journey.id) || d.journey_id;
    add(links, el('a', {class: 'btn btn-small journey-link', id: 'journey-link', href: '/journeys/' + encodeURIComponent(jid)}, t('session.journey_map')));
  }
  if (canRaw && !d.withdrawn) {
    add(links, el('span', {class: 'export-links'}, t('session.export'), ' ',
      ['eaf', 'vtt', 'srt'].map((ext) => el('a', {class: 'btn btn-small btn-ghost', href: `/api/v1/sessions/${sid}/export.${ext}`,
        download: `${d.participant || id}.${ext}`, dataset: {export: ext}}, ext.toUpperCase()))));
  }
  if (can('jobs')) {
    add(links, el('button', {type: 'button', class: 'btn btn-small', onclick: async () => {
      try { await api('POST', `/sessions/${sid}/analyze`, {}); toast(t('session.analysis_queued'), 'ok'); } catch (_) { /* toast */ }
    }}, t('sessions.analyze')));
  }
  if (can('withdraw') && !d.withdrawn) add(links, withdrawButton(sid));
  add(links, el('button', {type: 'button', class: 'btn btn-small btn-ghost', id: 'help-button', title: t('keys.title'), onclick: showHelp}, '?'));

  refill(head,
    el('div', {class: 'head-title'},
      el('a', {href: '/', class: 'back-link'}, '← ', t('nav.sessions')),
      el('h1', null, t('session.participant'), ' ', el('span', {class: 'code'}, d.participant || id)),
      el('span', {class: 'muted'}, [d.study, (d.journey && d.journey.title) || d.life_situation].filter(Boolean).join(' · '))),
    facts,
    el('div', {class: 'break'}),
    d.qa ? qaSummary(d.qa) : el('span', {class: 'spacer'}),
    links,
    d.withdrawn ? el('p', {class: 'banner banner-warn'}, t('session.withdrawn')) : null);
}

function fact(label, value) {
  return el('span', {class: 'fact'}, el('span', {class: 'fact-label'}, label), ' ', el('span', {class: 'fact-value'}, value));
}

export function analysisText(a) {
  const s = t('analysis.' + (a.status || 'none'));
  if (ACTIVE_JOB.has(a.status)) return `${s} ${a.stage ? '· ' + a.stage : ''} ${a.progress != null ? fmtPercent(a.progress) : ''}`.trim();
  return s;
}

function withdrawButton(sid) {
  const btn = el('button', {type: 'button', class: 'btn btn-small btn-danger'}, t('session.withdraw'));
  btn.addEventListener('click', () => {
    const reason = el('input', {name: 'reason', required: true, size: 40, placeholder: t('session.withdraw_reason')});
    const form = el('form', {class: 'stack'},
      el('p', null, t('session.withdraw_explain')), reason,
      el('div', {class: 'row-actions'}, el('button', {type: 'submit', class: 'btn btn-danger'}, t('session.withdraw_confirm'))));
    const m = modal(t('session.withdraw'), form);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!reason.value.trim()) { reason.focus(); return; }
      try { await api('POST', `/sessions/${sid}/withdraw`, {reason: reason.value.trim()}); m.close(); location.reload(); } catch (_) { /* toast */ }
    });
    reason.focus();
  });
  return btn;
}

/** The QA report as the analyzer writes it, tolerant of tuple or object shapes. */
function qaSummary(qa) {
  const items = [];
  const gaps = Array.isArray(qa.gaps) ? qa.gaps : [];
  items.push(el('span', {class: ['qa-item', gaps.length && 'qa-bad']}, t('qa.gaps', {n: gaps.length})));
  const frames = (Array.isArray(qa.frames) ? qa.frames : []).map((f) => Array.isArray(f)
    ? {track: f[0], frames: f[1], expected: f[2]} : {track: f.track, frames: f.frames, expected: f.expected_frames ?? f.expected});
  for (const f of frames) {
    const dropped = Math.max(0, (f.expected || 0) - (f.frames || 0));
    const share = f.expected ? dropped / f.expected : 0;
    items.push(el('span', {class: ['qa-item', share > 0.02 && 'qa-bad'], title: `${f.frames} / ${f.expected}`},
      t('qa.dropped', {track: t('track.' + f.track) === 'track.' + f.track ? f.track : t('track.' + f.track), n: dropped, pct: fmtNumber(share * 100, 1)})));
  }
  let unc = qa.clock_uncertainty_ms;
  if (Array.isArray(unc)) unc = unc.map((c) => Array.isArray(c) ? c[1] : (c && (c.uncertainty_ms ?? c.ms)));
  else if (unc && typeof unc === 'object') unc = Object.values(unc);
  else if (typeof unc === 'number') unc = [unc];
  else unc = [];
  unc = unc.filter((x) => typeof x === 'number');
  items.push(el('span', {class: ['qa-item', unc.some((x) => x > 33) && 'qa-bad']},
    unc.length ? t('qa.clock', {ms: fmtNumber(Math.max(...unc), 1)}) : t('qa.clock_none')));
  const dec = Array.isArray(qa.decode_errors) ? qa.decode_errors : [];
  if (dec.length) items.push(el('span', {class: 'qa-item qa-bad'}, t('qa.decode', {n: dec.length})));
  const rec = Array.isArray(qa.recovered_segments) ? qa.recovered_segments : [];
  if (rec.length) items.push(el('span', {class: 'qa-item qa-bad'}, t('qa.recovered', {n: rec.length})));
  if (qa.events_rejected) items.push(el('span', {class: 'qa-item'}, t('qa.rejected', {n: qa.events_rejected})));
  if (qa.transcript_status && qa.transcript_status !== 'ok') items.push(el('span', {class: 'qa-item qa-bad'}, qa.transcript_status));

  const details = el('ul', {class: 'qa-details'},
    gaps.map((g) => el('li', null, t('qa.gap_line', {track: g.track, from: fmtMs((g.start_ns ?? 0) / 1e6), to: g.end_ns == null ? '…' : fmtMs(g.end_ns / 1e6)}), ' ', el('span', {class: 'muted'}, g.reason || ''))),
    dec.map((x) => el('li', null, typeof x === 'string' ? x : JSON.stringify(x))),
    rec.map((x) => el('li', null, t('qa.recovered_file'), ' ', String(x))));
  return el('details', {class: 'qa', id: 'qa-summary'}, el('summary', null, el('strong', null, t('qa.title')), ' ', items), details);
}
