// Small shared widgets: toasts, selects, modals, progress bars, severity and
// emotion badges.

import {el} from './dom.js';
import {t} from './i18n.js';

export function toast(message, kind = 'error', timeoutMs = 6000) {
  let box = document.getElementById('toasts');
  if (!box) { box = el('div', {id: 'toasts', 'aria-live': 'polite'}); document.body.appendChild(box); }
  const item = el('div', {class: ['toast', 'toast-' + kind], role: kind === 'error' ? 'alert' : 'status'},
    el('span', {class: 'toast-text'}, message),
    el('button', {type: 'button', class: 'toast-close', 'aria-label': t('common.close'),
      onclick: () => item.remove()}, '×'));
  box.appendChild(item);
  if (timeoutMs) setTimeout(() => item.remove(), timeoutMs);
  return item;
}

/** A <select> with [value,label] options. */
export function select(name, options, value, attrs = {}) {
  return el('select', {name, ...attrs},
    options.map(([v, label]) => el('option', {value: v, selected: String(v) === String(value ?? '')}, label)));
}

export function modal(titleText, body, {onClose, id} = {}) {
  const close = () => { overlay.remove(); document.removeEventListener('keydown', onKey, true); if (onClose) onClose(); };
  const onKey = (e) => { if (e.key === 'Escape') { e.stopPropagation(); close(); } };
  const overlay = el('div', {class: 'modal-backdrop', id, onclick: (e) => { if (e.target === overlay) close(); }},
    el('div', {class: 'modal', role: 'dialog', 'aria-modal': 'true', 'aria-label': titleText},
      el('div', {class: 'modal-head'}, el('h2', null, titleText),
        el('button', {type: 'button', class: 'btn btn-ghost btn-small modal-close', 'aria-label': t('common.close'), onclick: close}, '×')),
      el('div', {class: 'modal-body'}, body)));
  document.addEventListener('keydown', onKey, true);
  document.body.appendChild(overlay);
  return {close, node: overlay};
}

/** A progress bar element for a job-ish {status, progress, stage, message}. */
export function progressBar(state) {
  const p = Math.max(0, Math.min(1, Number(state && state.progress) || 0));
  const status = (state && state.status) || 'none';
  const bar = el('div', {class: ['progress', 'progress-' + status], role: 'progressbar',
    'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(p * 100))},
  el('div', {class: 'progress-fill', style: {width: (status === 'done' ? 100 : p * 100) + '%'}}));
  return bar;
}

/** Labels of things the API names by id. */
export const SEVERITY = [1, 2, 3, 4];
export const EMOTIONS = ['positive', 'neutral', 'negative'];

export function severityBadge(n) {
  const s = Number(n) || 0;
  return el('span', {class: ['sev', 'sev-' + s], title: t('severity.' + s)}, String(s || '?'), ' ', el('span', {class: 'sev-label'}, t('severity.' + s)));
}

export function emotionBadge(e) {
  return el('span', {class: ['emo', 'emo-' + e], title: t('emotion.' + e)}, t('emotion.' + e));
}
