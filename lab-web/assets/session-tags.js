// The session page's tags: the list (edit, delete, history with field
// diffs, clip making with live job progress), selection shared with the
// timeline, and the upsert the tag form and candidate acceptance use.

import {el, add, clear, refill} from './dom.js';
import {t} from './i18n.js';
import {fmtMs, fmtDate, fmtPercent} from './format.js';
import {progressBar, severityBadge, emotionBadge} from './widgets.js';
import {api} from './api.js';
import {ACTIVE_JOB} from './jobs.js';
import {categoryLabel} from './labels.js';

/** page: the session model; its tags are page.state.tags. */
export function createTags(page, tagsPanel, tagsBox) {
  const {state, sid, canTag, categories} = page;
  const stepTitle = (id) => page.stepTitle(id);

  function upsert(tag) {
    const i = state.tags.findIndex((g) => String(g.id) === String(tag.id));
    if (i >= 0) state.tags[i] = tag; else state.tags.push(tag);
    render();
    page.tl.redraw();
  }

  function render() {
    const newBtn = canTag ? el('button', {type: 'button', class: 'btn btn-small', onclick: () => page.tagForm.openFromMarks()}, '+ ', t('tags.new'), ' ', el('kbd', null, 'T')) : null;
    refill(tagsPanel, el('div', {class: 'panel-head'}, el('h2', {id: 'tags-h'}, t('tags.title')),
      el('span', {class: 'count-pill'}, String(state.tags.length)), el('span', {class: 'spacer'}), newBtn), tagsBox);
    clear(tagsBox);
    if (!state.tags.length) { add(tagsBox, el('p', {class: 'empty'}, t('tags.none'))); return; }
    const list = state.tags.slice().sort((a, b) => a.start_ms - b.start_ms);
    for (const g of list) add(tagsBox, tagItem(g));
  }

  function tagItem(g) {
    const clipBox = el('span', {class: 'clip-box'}, clipState(g));
    const item = el('div', {class: ['tag', 'sev-border-' + g.severity], dataset: {id: g.id}, tabindex: '-1'},
      el('div', {class: 'tag-main'},
        el('div', {class: 'tag-head'},
          el('button', {type: 'button', class: 'time-link', onclick: () => { page.player.seek(g.start_ms); page.tl.focus(g.start_ms, g.end_ms); }}, fmtMs(g.start_ms), '–', fmtMs(g.end_ms)),
          el('span', {class: 'tag-step'}, stepTitle(g.step)),
          el('span', {class: 'tag-category'}, categoryLabel(g.category, categories)),
          severityBadge(g.severity), emotionBadge(g.emotion),
          g.candidate_id ? el('span', {class: 'badge badge-muted', title: t('tags.from_candidate')}, t('tags.from_candidate_short')) : null),
        g.note ? el('div', {class: 'tag-note'}, g.note) : null,
        g.quote ? el('blockquote', {class: 'tag-quote'}, '«', g.quote, '»') : null,
        el('div', {class: 'tag-meta muted small'}, [userName(g.created_by), g.updated_at || g.created_at ? fmtDate(g.updated_at || g.created_at) : null].filter(Boolean).join(' · '))),
      el('div', {class: 'tag-actions'},
        canTag ? el('button', {type: 'button', class: 'btn btn-small btn-ghost edit', onclick: () => page.tagForm.open(g)}, t('common.edit')) : null,
        canTag ? el('button', {type: 'button', class: 'btn btn-small btn-ghost delete', onclick: () => deleteTag(g)}, t('common.delete')) : null,
        el('button', {type: 'button', class: 'btn btn-small btn-ghost history', onclick: () => toggleHistory(g, item)}, t('tags.history')),
        canTag ? el('button', {type: 'button', class: 'btn btn-small btn-ghost clip', onclick: () => makeClip(g, clipBox)}, t('tags.clip')) : null,
        clipBox));
    item.addEventListener('click', (e) => {
      if (e.target.closest('button, a, input')) return;
      selectTag(g.id, false);
    });
    return item;
  }

  function userName(u) {
    if (!u) return null;
    if (typeof u === 'object') return u.name || u.login || null;
    return String(u);
  }

  function clipState(g) {
    const c = g.clip;
    if (!c) return null;
    if (c.status === 'done' && c.url) return el('a', {href: c.url, class: 'clip-link', target: '_blank', rel: 'noopener'}, '▶ ', t('tags.clip_open'));
    if (c.status === 'failed') return el('span', {class: 'error-text small'}, t('tags.clip_failed'));
    if (ACTIVE_JOB.has(c.status)) return el('span', {class: 'muted small'}, t('tags.clip_working'));
    return null;
  }

  function selectTag(tagId, scroll) {
    for (const n of tagsBox.querySelectorAll('.tag.selected')) n.classList.remove('selected');
    const node = tagsBox.querySelector(`.tag[data-id="${CSS.escape(String(tagId))}"]`);
    const g = state.tags.find((x) => String(x.id) === String(tagId));
    if (g) page.tl.select('tags', g);
    if (!node) return;
    node.classList.add('selected');
    if (scroll) { node.scrollIntoView({block: 'nearest', behavior: 'smooth'}); if (g) page.player.seek(g.start_ms); }
  }

  async function deleteTag(g) {
    if (!confirm(t('tags.delete_confirm'))) return;
    try {
      await api('DELETE', `/tags/${encodeURIComponent(g.id)}`);
      state.tags = state.tags.filter((x) => x.id !== g.id);
      for (const c of state.candidates) if (String(c.tag_id) === String(g.id)) { c.status = 'open'; c.tag_id = null; }
      render(); page.candidates.render(); page.tl.redraw();
    } catch (_) { /* toast */ }
  }

  async function toggleHistory(g, item) {
    const open = item.querySelector('.tag-history');
    if (open) { open.remove(); return; }
    const box = el('div', {class: 'tag-history'}, el('p', {class: 'muted small'}, t('common.loading')));
    add(item, box);
    try {
      const r = await api('GET', `/tags/${encodeURIComponent(g.id)}/history`);
      clear(box);
      const entries = r.history || [];
      if (!entries.length) { add(box, el('p', {class: 'muted small'}, t('tags.history_empty'))); return; }
      add(box, el('ol', {class: 'history-list'}, entries.map((h) => el('li', null,
        el('span', {class: 'nowrap'}, fmtDate(h.at)), ' · ', el('strong', null, userName(h.user) || '—'), ' · ',
        t('history.' + h.action), historyDiff(h)))));
    } catch (_) { box.remove(); }
  }

  function historyDiff(h) {
    if (h.action !== 'update' || !h.before || !h.after) return null;
    const fields = ['start_ms', 'end_ms', 'step', 'category', 'severity', 'emotion', 'note', 'quote'];
    const show = (k, v) => v == null || v === '' ? '—' : k.endsWith('_ms') ? fmtMs(v) : k === 'category' ? categoryLabel(v, categories)
      : k === 'severity' ? t('severity.' + v) : k === 'emotion' ? t('emotion.' + v) : k === 'step' ? stepTitle(v) : String(v);
    const changed = fields.filter((k) => JSON.stringify(h.before[k]) !== JSON.stringify(h.after[k]));
    if (!changed.length) return null;
    return el('ul', {class: 'diff'}, changed.map((k) => el('li', null, t('field.' + k), ': ',
      el('del', null, show(k, h.before[k])), ' → ', el('ins', null, show(k, h.after[k])))));
  }

  async function makeClip(g, box) {
    try {
      const r = await api('POST', `/tags/${encodeURIComponent(g.id)}/clip`, {});
      state.clipJobs.set(String(r.job_id), String(g.id));
      g.clip = {status: 'queued', url: null};
      refill(box, progressBar({status: 'queued', progress: 0}), el('span', {class: 'muted small'}, t('tags.clip_working')));
    } catch (_) { /* toast */ }
  }

  function onClipJob(job) {
    const tagId = state.clipJobs.get(String(job.id)) || (job.kind === 'clip' && job.tag_id != null ? String(job.tag_id) : null);
    if (!tagId) return;
    const g = state.tags.find((x) => String(x.id) === tagId);
    if (!g) return;
    const node = tagsBox.querySelector(`.tag[data-id="${CSS.escape(tagId)}"] .clip-box`);
    if (job.status === 'done') {
      g.clip = {status: 'done', url: (g.clip && g.clip.url) || `/api/v1/clips/${encodeURIComponent(tagId)}.mp4`};
      state.clipJobs.delete(String(job.id));
      // The server's url wins when it has one.
      api('GET', `/sessions/${sid}/tags`, null, {quiet: true}).then((r) => {
        const fresh = (r.tags || []).find((x) => String(x.id) === tagId);
        if (fresh && fresh.clip && fresh.clip.url) { g.clip = fresh.clip; if (node) refill(node, clipState(g)); }
      }).catch(() => {});
      if (node) refill(node, clipState(g));
    } else if (job.status === 'failed' || job.status === 'cancelled') {
      g.clip = {status: 'failed', url: null};
      if (node) refill(node, clipState(g), job.message ? el('span', {class: 'small muted', title: job.message}, ' ', job.message) : null);
    } else if (node) {
      refill(node, progressBar(job), el('span', {class: 'muted small'}, fmtPercent(job.progress || 0)));
    }
  }

  return {render, upsert, select: selectTag, onClipJob};
}
