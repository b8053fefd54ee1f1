// Formatting and parsing of times, durations, dates and numbers in the UI
// language, and query strings.

import {t, locale} from './i18n.js';

/** 83456 -> "01:23.4"; 3723400 -> "1:02:03.4"; negative values get a minus. */
export function fmtMs(ms, opts) {
  if (ms === null || ms === undefined || !isFinite(ms)) return '—';
  const neg = ms < 0;
  let tenths = Math.floor(Math.abs(ms) / 100 + 1e-6);
  const tenth = tenths % 10; tenths = (tenths - tenth) / 10;
  const s = tenths % 60; const totalMin = (tenths - s) / 60;
  const m = totalMin % 60; const h = (totalMin - m) / 60;
  const pad = (n) => String(n).padStart(2, '0');
  let out = h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${pad(totalMin)}:${pad(s)}`;
  if (!(opts && opts.noTenths)) out += '.' + tenth;
  return (neg ? '−' : '') + out;
}

/** "mm:ss.t", "h:mm:ss.t", "ss.t" or plain seconds -> ms; NaN when unparsable. */
export function parseTime(text) {
  const s = String(text).trim().replace(',', '.').replace('−', '-');
  if (!/^-?\d+(:\d{1,2}){0,2}(\.\d+)?$/.test(s)) return NaN;
  const neg = s.startsWith('-');
  const parts = s.replace('-', '').split(':');
  let sec = 0;
  for (const p of parts) sec = sec * 60 + parseFloat(p);
  return Math.round((neg ? -sec : sec) * 1000);
}

/** Compact duration: 83456 -> "1 мин 23 с" (localized). */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return '—';
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  if (h) return t('unit.hm', {h, m});
  if (m) return t('unit.ms', {m, s});
  return t('unit.s', {s});
}

export function fmtDate(unixMs, withTime = true) {
  if (unixMs === null || unixMs === undefined || unixMs === '') return '—';
  const d = new Date(typeof unixMs === 'number' ? unixMs : Date.parse(unixMs));
  if (isNaN(d)) return String(unixMs);
  const o = withTime
    ? {year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit'}
    : {year: 'numeric', month: '2-digit', day: '2-digit'};
  return d.toLocaleString(locale(), o);
}

export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined || !isFinite(n)) return '—';
  return Number(n).toLocaleString(locale(), {maximumFractionDigits: digits, minimumFractionDigits: digits});
}

export function fmtPercent(x) { return (x === null || x === undefined || !isFinite(x)) ? '—' : fmtNumber(x * 100, 0) + '\u202f%'; }

/** "2026-11-23" (from a date input) -> Unix ms at local midnight; endOfDay adds a day. */
export function dateInputToMs(value, endOfDay) {
  if (!value) return null;
  const d = new Date(value + 'T00:00:00');
  if (isNaN(d)) return null;
  return d.getTime() + (endOfDay ? 86400000 - 1 : 0);
}

export function msToDateInput(ms) {
  if (ms === null || ms === undefined || ms === '') return '';
  const d = new Date(Number(ms));
  if (isNaN(d)) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Query string from an object, skipping empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}
