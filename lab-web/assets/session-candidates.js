// The session page's friction candidates: the list the analysis proposed,
// filtered by status, each with accept (which makes a tag) or reject with a
// reason, and selection shared with the timeline.

import {el, add, clear, refill, scrollWithin} from './dom.js';
import {t} from './i18n.js';
import {fmtMs, fmtPercent, fmtNumber} from './format.js';
import {toast, select} from './widgets.js';
import {api} from './api.js';
import {detectorLabel} from './labels.js';

/** page: the session model; its candidates are page.state.candidates. */
export function createCandidates(page, candidatesPanel, candidatesBox) {
  const {state, detail, sid, canRaw, canTag} = page;
  let candFilter = 'all';   // status filter

  function render() {
    const counts = {open: 0, accepted: 0, rejected: 0};
    for (const c of state.candidates) counts[c.status || 'open'] = (counts[c.status || 'open'] || 0) + 1;
    const filterSel = select('candidate-filter', [
      ['all', t('candidates.all', {n: state.candidates.length})], ['open', t('candidates.open', {n: counts.open})],
      ['accepted', t('candidates.accepted', {n: counts.accepted})], ['rejected', t('candidates.rejected', {n: counts.rejected})]], candFilter,
    {'aria-label': t('candidates.filter')});
    filterSel.addEventListener('change', () => { candFilter = filterSel.value; render(); });
    refill(candidatesPanel, 
      el('div', {class: 'panel-head'}, el('h2', {id: 'candidates-h'}, t('candidates.title')),
        el('span', {class: 'count-pill', title: t('candidates.open_title')}, String(counts.open)), el('span', {class: 'spacer'}), filterSel),
      candidatesBox);
    clear(candidatesBox);
    const list = state.candidates.filter((c) => candFilter === 'all' || (c.status || 'open') === candFilter)
      .sort((a, b) => a.start_ms - b.start_ms);
    if (!list.length) {
      const analysed = detail.analysis && detail.analysis.status === 'done';
      const msg = state.candidates.length ? t('candidates.none_filtered') : !canRaw || (page.timelineData && page.timelineData.error) ? t('common.no_access')
        : analysed ? t('candidates.none') : t('candidates.not_analysed');
      add(candidatesBox, el('p', {class: 'empty'}, msg));
      return;
    }
    for (const c of list) add(candidatesBox, candidateItem(c));
  }

  function candidateItem(c) {
    const st = c.status || 'open';
    const words = (c.evidence && c.evidence.words || []).map((w) => typeof w === 'string' ? w : w.text).filter(Boolean);
    const evCount = (c.evidence && c.evidence.events || []).length;
    const item = el('div', {class: ['candidate', 'status-' + st], dataset: {id: c.id, status: st}, tabindex: '-1'},
      el('div', {class: 'cand-head'},
        el('span', {class: 'detector'}, [c.detector, ...((c.evidence && c.evidence.also) || [])].map(detectorLabel).join(' + ')),
        el('button', {type: 'button', class: 'time-link', title: t('common.seek'), onclick: () => { page.player.seek(c.start_ms); page.tl.focus(c.start_ms, c.end_ms); }},
          fmtMs(c.start_ms), '–', fmtMs(c.end_ms)),
        el('span', {class: 'confidence', title: t('candidate.confidence')}, fmtPercent(c.confidence)),
        el('span', {class: ['badge', 'badge-' + st, 'cand-status']}, t('candidate.status_' + st))),
      el('div', {class: 'cand-meta muted small'}, t('candidate.step'), ': ', page.stepTitle(c.step),
        evCount ? ' · ' + t('candidate.events_n', {n: evCount}) : ''),
      c.note ? el('div', {class: 'cand-note'}, c.note) : null,
      words.length ? el('div', {class: 'cand-words'}, '«', words.join(' '), '»') : null,
      why(c),
      st === 'rejected' && c.reason ? el('div', {class: 'cand-reason small'}, t('candidate.reason'), ': ', c.reason) : null,
      st === 'accepted' && c.tag_id != null ? el('button', {type: 'button', class: 'link small', onclick: () => page.tags.select(c.tag_id, true)}, t('candidate.go_to_tag')) : null);
    if (canTag && st === 'open') {
      const actions = el('div', {class: 'cand-actions'});
      const accept = el('button', {type: 'button', class: 'btn btn-small btn-ok accept'}, t('candidate.accept'));
      const reject = el('button', {type: 'button', class: 'btn btn-small btn-ghost reject'}, t('candidate.reject'));
      accept.addEventListener('click', async () => {
        accept.disabled = reject.disabled = true;
        try {
          const r = await api('POST', `/sessions/${sid}/candidates/${encodeURIComponent(c.id)}/accept`, {});
          const tag = r && r.tag;
          Object.assign(c, {status: 'accepted', tag_id: tag ? tag.id : c.tag_id});
          if (tag) page.tags.upsert(tag);
          render(); page.tl.redraw();
          toast(t('candidate.accepted_toast'), 'ok', 2500);
        } catch (_) { accept.disabled = reject.disabled = false; }
      });
      reject.addEventListener('click', () => {
        const reason = el('input', {class: 'reject-reason', name: 'reason', placeholder: t('candidate.reason_placeholder'), 'aria-label': t('candidate.reason'), required: true});
        const confirm = el('button', {type: 'submit', class: 'btn btn-small btn-danger reject-confirm'}, t('candidate.reject_confirm'));
        const cancel = el('button', {type: 'button', class: 'btn btn-small btn-ghost', onclick: () => { form.replaceWith(actions); }}, t('common.cancel'));
        const quick = el('div', {class: 'quick-reasons'}, ['reason_false', 'reason_duplicate', 'reason_expected'].map((k) =>
          el('button', {type: 'button', class: 'chip', onclick: () => { reason.value = t('candidate.' + k); reason.focus(); }}, t('candidate.' + k))));
        const form = el('form', {class: 'reject-form'}, el('div', {class: 'row'}, reason, confirm, cancel), quick);
        form.addEventListener('submit', async (e) => {
          e.preventDefault();
          const text = reason.value.trim();
          if (!text) { reason.classList.add('invalid'); reason.focus(); return; }
          confirm.disabled = true;
          try {
            const r = await api('POST', `/sessions/${sid}/candidates/${encodeURIComponent(c.id)}/reject`, {reason: text});
            Object.assign(c, r && r.id != null ? r : {status: 'rejected', reason: text});
            render(); page.tl.redraw();
          } catch (_) { confirm.disabled = false; }
        });
        reason.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); form.replaceWith(actions); } });
        actions.replaceWith(form);
        reason.focus();
      });
      add(actions, accept, reject);
      add(item, actions);
    }
    item.addEventListener('click', (e) => {
      if (e.target.closest('button, input, form, a, summary')) return;
      selectCandidate(c.id, false);
      page.player.seek(c.start_ms);
    });
    return item;
  }

  /** Why the candidate is what it is: the rule and each adjustment to its
   * confidence, then what was seen (its events and words, with times). */
  function why(c) {
    const ev = c.evidence || {};
    const basis = ev.basis || [];
    const seqs = ev.events || [];
    const words = (ev.words || []).map((w) => typeof w === 'string' ? w : w.text);
    if (!basis.length && !seqs.length && !words.length) return null;
    const signed = (x) => (x < 0 ? '−' : '+') + fmtNumber(Math.abs(x), 2);
    const box = el('details', {class: 'cand-why small'}, el('summary', {}, t('candidate.why')));
    if (basis.length) {
      const [rule, ...rest] = basis;
      add(box, el('ol', {class: 'cand-basis'},
        el('li', {}, el('span', {class: 'delta'}, fmtNumber(rule.delta, 2)), ' ', t('candidate.rule'), ': ', rule.why),
        ...rest.map((x) => el('li', {}, el('span', {class: 'delta'}, signed(x.delta)), ' ', x.why)),
        el('li', {class: 'total'}, el('span', {class: 'delta'}, '= ' + fmtNumber(c.confidence, 2)), ' ', t('candidate.confidence'))));
    }
    const bySeq = new Map(((page.timelineData && page.timelineData.events) || []).map((e) => [e.seq, e]));
    const seen = [];
    for (const seq of seqs) {
      const e = bySeq.get(seq);
      seen.push(e ? [e.t_ms, `${e.kind}${e.summary ? ': ' + e.summary : ''}`] : [null, t('candidate.event_seq', {seq})]);
    }
    const at = ev.words_ms || [];
    // Words in runs with their first word's time.
    let run = null;
    words.forEach((w, i) => {
      const ms = at[i];
      if (!run || (ms != null && run.last != null && ms - run.last > 1500)) { run = {ms, last: ms, text: []}; seen.push(run); }
      run.text.push(w); if (ms != null) run.last = ms;
    });
    const rows = seen.map((x) => Array.isArray(x) ? x : [x.ms, '«' + x.text.join(' ') + '»'])
      .sort((a, b) => (a[0] ?? Infinity) - (b[0] ?? Infinity));
    if (rows.length) {
      add(box, el('div', {class: 'muted'}, t('candidate.seen')),
        el('ul', {class: 'cand-seen'}, ...rows.map(([ms, text]) => el('li', {},
          ms == null ? '' : el('button', {type: 'button', class: 'time-link', onclick: () => page.player.seek(ms)}, fmtMs(ms)), ' ', text))));
    }
    return box;
  }

  function selectCandidate(cid, scroll) {
    for (const n of candidatesBox.querySelectorAll('.candidate.selected')) n.classList.remove('selected');
    let node = candidatesBox.querySelector(`.candidate[data-id="${CSS.escape(String(cid))}"]`);
    if (!node && candFilter !== 'all') { candFilter = 'all'; render(); node = candidatesBox.querySelector(`.candidate[data-id="${CSS.escape(String(cid))}"]`); }
    if (!node) return;
    node.classList.add('selected');
    const c = state.candidates.find((x) => String(x.id) === String(cid));
    if (c) { page.tl.select('candidates', c); if (scroll) page.player.seek(c.start_ms); }
    if (scroll) scrollWithin(candidatesBox, node);
  }


  return {render, select: selectCandidate};
}
