// The session page's tag form: a drawer to create or edit a tag (times,
// step, category, severity, emotion, note, quote from the transcript), opened
// from the I/O marks, a transcript selection or the moment around the
// playhead; and the marks display under the player.

import {el, add, clear} from './dom.js';
import {t, lang} from './i18n.js';
import {fmtMs, parseTime} from './format.js';
import {toast, select, SEVERITY, EMOTIONS} from './widgets.js';
import {api} from './api.js';

/** page: the session model; the marks are page.state.markIn / markOut. */
export function createTagForm(page) {
  const {state, sid, canTag, categories, journeySteps} = page;
  const stepOpts = [['', t('tags.no_step')], ...journeySteps.map((s, i) => [s.id, `${i + 1}. ${s.title}`])];
  // Steps seen in the timeline but absent from the definition still get an option.
  for (const s of state.steps) if (!stepOpts.some(([v]) => v === s.step)) stepOpts.push([s.step, s.title || s.step]);
  const start = el('input', {name: 'start', id: 'tag-start', required: true, size: 9, inputmode: 'decimal', pattern: '[0-9:.,]+', autocomplete: 'off'});
  const end = el('input', {name: 'end', id: 'tag-end', required: true, size: 9, inputmode: 'decimal', pattern: '[0-9:.,]+', autocomplete: 'off'});
  const step = select('step', stepOpts, '', {id: 'tag-step'});
  const category = select('category', [['', t('tags.choose')], ...categories.map((c) => [c.id, lang() === 'en' ? c.en : c.ru])], '', {id: 'tag-category', required: true});
  const severity = select('severity', SEVERITY.map((n) => [String(n), `${n} — ${t('severity.' + n)}`]), '2', {id: 'tag-severity'});
  const emotions = el('div', {class: 'radio-row', role: 'radiogroup', 'aria-label': t('field.emotion')},
    EMOTIONS.map((e) => el('label', {class: ['radio', 'emo-' + e]},
      el('input', {type: 'radio', name: 'emotion', value: e, checked: e === 'neutral'}), ' ', t('emotion.' + e))));
  const note = el('textarea', {name: 'note', id: 'tag-note', rows: '2', placeholder: t('tags.note_placeholder')});
  const quote = el('textarea', {name: 'quote', id: 'tag-quote', rows: '3', placeholder: t('tags.quote_placeholder')});
  const error = el('p', {class: 'form-error', hidden: true, role: 'alert'});
  const title = el('h2', null, t('tags.new'));
  const submit = el('button', {type: 'submit', class: 'btn btn-primary'}, t('common.save'));
  const field = (label, forId, control) => el('div', {class: 'field'}, el('label', {for: forId}, label), control);
  const useNow = (input) => el('button', {type: 'button', class: 'btn btn-icon', title: t('tags.use_current'),
    onclick: () => { setTime(input, page.player.time()); refreshQuote(); }}, t('tags.now'));
  const form = el('form', {id: 'tag-form', class: 'tag-form', novalidate: true},
    title,
    el('div', {class: 'field-row'},
      field(t('field.start'), 'tag-start', el('div', {class: 'inline'}, start, useNow(start))),
      field(t('field.end'), 'tag-end', el('div', {class: 'inline'}, end, useNow(end)))),
    field(t('field.step'), 'tag-step', step),
    field(t('field.category'), 'tag-category', category),
    el('div', {class: 'field-row'}, field(t('field.severity'), 'tag-severity', severity)),
    el('div', {class: 'field'}, el('span', {class: 'label'}, t('field.emotion')), emotions),
    field(t('field.note'), 'tag-note', note),
    field(t('field.quote'), 'tag-quote', quote),
    error,
    el('div', {class: 'row-actions'}, submit, el('button', {type: 'button', class: 'btn btn-ghost', onclick: () => close()}, t('common.cancel')),
      el('span', {class: 'muted small'}, t('tags.form_hint'))));
  const drawer = el('aside', {class: 'drawer', id: 'tag-editor', hidden: true, 'aria-label': t('tags.new')}, form);
  document.body.append(drawer);

  let editing = null;
  let quoteDirty = false;
  quote.addEventListener('input', () => { quoteDirty = true; });

  function setTime(input, ms) { input.value = fmtMs(ms); input.dataset.ms = String(Math.round(ms)); }
  function readTime(input) {
    // Keep the exact ms unless the user typed another value.
    if (input.dataset.ms && fmtMs(Number(input.dataset.ms)) === input.value) return Number(input.dataset.ms);
    return parseTime(input.value);
  }
  for (const input of [start, end]) input.addEventListener('change', () => { refreshQuote(); });
  function refreshQuote() {
    if (quoteDirty || editing) return;
    const s = readTime(start), e = readTime(end);
    if (isFinite(s) && isFinite(e) && e > s) quote.value = page.transcript.quoteFor(s, e);
  }

  function open(tag, range) {
    editing = tag || null;
    quoteDirty = false;
    error.hidden = true;
    title.textContent = tag ? t('tags.edit') : t('tags.new');
    if (tag) {
      setTime(start, tag.start_ms); setTime(end, tag.end_ms);
      step.value = tag.step || '';
      category.value = tag.category || '';
      severity.value = String(tag.severity || 2);
      for (const r of form.querySelectorAll('[name=emotion]')) r.checked = r.value === (tag.emotion || 'neutral');
      note.value = tag.note || '';
      quote.value = tag.quote || '';
    } else {
      setTime(start, range.start); setTime(end, range.end);
      step.value = page.stepAt(range.start) || page.stepAt((range.start + range.end) / 2) || '';
      category.value = '';
      severity.value = '2';
      for (const r of form.querySelectorAll('[name=emotion]')) r.checked = r.value === 'neutral';
      note.value = '';
      quote.value = range.quote != null ? range.quote : page.transcript.quoteFor(range.start, range.end);
      quoteDirty = range.quote != null;
    }
    drawer.hidden = false;
    document.body.classList.add('drawer-open');
    (tag ? note : category).focus();
  }
  function close() {
    drawer.hidden = true;
    document.body.classList.remove('drawer-open');
    editing = null;
    if (document.activeElement && drawer.contains(document.activeElement)) document.activeElement.blur();
  }
  form.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.preventDefault(); close(); }
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const s = readTime(start), en = readTime(end);
    const fail = (msg, focus) => { error.textContent = msg; error.hidden = false; if (focus) focus.focus(); };
    if (!isFinite(s) || s < 0) return fail(t('tags.bad_time'), start);
    if (!isFinite(en) || en <= s) return fail(t('tags.bad_range'), end);
    if (!category.value) return fail(t('tags.need_category'), category);
    const emotion = (form.querySelector('[name=emotion]:checked') || {}).value || 'neutral';
    const body = {start_ms: Math.round(s), end_ms: Math.round(en), step: step.value || null, category: category.value,
      severity: Number(severity.value), emotion, note: note.value.trim() || null, quote: quote.value.trim() || null};
    submit.disabled = true;
    try {
      const tag = editing
        ? await api('PUT', `/tags/${encodeURIComponent(editing.id)}`, body)
        : await api('POST', `/sessions/${sid}/tags`, body);
      page.tags.upsert(tag);
      state.markIn = state.markOut = null; showMarks();
      close();
      page.tags.select(tag.id, false);
      toast(t('tags.saved'), 'ok', 2000);
    } catch (err) {
      fail(err.message);
    } finally { submit.disabled = false; }
  });

  function openTagFromMarks() {
    if (!canTag) return;
    const now = page.player.time();
    const dur = page.player.duration() || state.durationMs || Infinity;
    const sel = page.transcript.selectedWordRange();
    let range;
    if (state.markIn != null && state.markOut != null) range = {start: Math.min(state.markIn, state.markOut), end: Math.max(state.markIn, state.markOut)};
    else if (sel) range = sel;
    else if (state.markIn != null) range = {start: state.markIn, end: now > state.markIn ? now : state.markIn + 5000};
    else if (state.markOut != null) range = {start: Math.max(0, state.markOut - 5000), end: state.markOut};
    else range = {start: Math.max(0, now - 5000), end: Math.min(dur, now + 5000)};
    if (range.end <= range.start) range.end = range.start + 1000;
    page.player.pause();
    open(null, range);
  }

  function showMarks() {
    const m = page.player.marks;
    clear(m);
    if (state.markIn != null || state.markOut != null) {
      add(m, el('span', {class: 'mark'}, 'I ', fmtMs(state.markIn)), ' → ', el('span', {class: 'mark'}, 'O ', fmtMs(state.markOut)),
        el('button', {type: 'button', class: 'btn btn-icon', title: t('player.clear_marks'), onclick: () => { state.markIn = state.markOut = null; showMarks(); }}, '×'));
    }
    page.tl.redraw();
  }

  return {open, close, get isOpen() { return !drawer.hidden; }, openFromMarks: openTagFromMarks, showMarks};
}
