// Shared code of every lab-web page: the API client (cookie + CSRF header,
// 401 -> log-in page), the DOM builder, formatting helpers, toasts, the page
// header and the job event stream. Page scripts register themselves with
// `Lab.page(name, init)`; the one named by <body data-page> runs once the
// user is known.
//
// Security: everything that comes from the API (transcripts, notes, codes,
// event data) is untrusted. It only ever reaches the DOM through `el()` /
// textContent, never through innerHTML.
'use strict';

(function () {
  const API = '/api/v1';
  const pages = {};
  let mePromise = null;
  let csrf = null;

  // ---------- DOM ----------

  /**
   * el('a', {href: '/x', class: 'btn', onclick: fn, dataset: {id: 1}}, 'text', child, [more])
   * Strings become text nodes; null/undefined/false children are skipped.
   */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') node.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k === 'style' && typeof v === 'object') Object.assign(node.style, v);
        else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
        else if (k === 'text') node.textContent = v;
        else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled' ||
                 k === 'hidden' || k === 'readOnly' || k === 'required' || k === 'multiple') node[k] = v;
        else if (k === 'href' || k === 'src') node.setAttribute(k, safeUrl(v));
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(node, c);
      else if (c instanceof Node) node.appendChild(c);
      else node.appendChild(document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /** add(node, a, b, ...) appends like el()'s children: null/false skipped, arrays flattened (native append would write "null"). */
  function add(node, ...children) { return append(node, children); }
  /** refill(node, ...) = clear, then add. */
  function refill(node, ...children) { return append(clear(node), children); }

  /** Only relative URLs and http(s) ones reach href/src: a javascript: URL from data never does. */
  function safeUrl(u) {
    const s = String(u);
    if (/^(\/|\.|#|\?)/.test(s) && !s.startsWith('//')) return s;
    try {
      const p = new URL(s, location.href);
      if (p.protocol === 'http:' || p.protocol === 'https:' || p.protocol === 'blob:') return s;
    } catch (_) { /* fall through */ }
    return '#';
  }

  // ---------- formatting ----------

  /** 83456 -> "01:23.4"; 3723400 -> "1:02:03.4"; negative values get a minus. */
  function fmtMs(ms, opts) {
    if (ms === null || ms === undefined || !isFinite(ms)) return '—';
    const neg = ms < 0;
    let tenths = Math.floor(Math.abs(ms) / 100 + 1e-6);
    const t = tenths % 10; tenths = (tenths - t) / 10;
    const s = tenths % 60; const totalMin = (tenths - s) / 60;
    const m = totalMin % 60; const h = (totalMin - m) / 60;
    const pad = (n) => String(n).padStart(2, '0');
    let out = h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${pad(totalMin)}:${pad(s)}`;
    if (!(opts && opts.noTenths)) out += '.' + t;
    return (neg ? '−' : '') + out;
  }

  /** "mm:ss.t", "h:mm:ss.t", "ss.t" or plain seconds -> ms; NaN when unparsable. */
  function parseTime(text) {
    const s = String(text).trim().replace(',', '.').replace('−', '-');
    if (!/^-?\d+(:\d{1,2}){0,2}(\.\d+)?$/.test(s)) return NaN;
    const neg = s.startsWith('-');
    const parts = s.replace('-', '').split(':');
    let sec = 0;
    for (const p of parts) sec = sec * 60 + parseFloat(p);
    return Math.round((neg ? -sec : sec) * 1000);
  }

  /** Compact duration: 83456 -> "1 мин 23 с" (localized). */
  function fmtDuration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return '—';
    const total = Math.round(ms / 1000);
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    if (h) return t('unit.hm', {h, m});
    if (m) return t('unit.ms', {m, s});
    return t('unit.s', {s});
  }

  function locale() { return lang() === 'en' ? 'en-GB' : 'ru-RU'; }

  function fmtDate(unixMs, withTime = true) {
    if (unixMs === null || unixMs === undefined || unixMs === '') return '—';
    const d = new Date(typeof unixMs === 'number' ? unixMs : Date.parse(unixMs));
    if (isNaN(d)) return String(unixMs);
    const o = withTime
      ? {year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit'}
      : {year: 'numeric', month: '2-digit', day: '2-digit'};
    return d.toLocaleString(locale(), o);
  }

  function fmtNumber(n, digits = 0) {
    if (n === null || n === undefined || !isFinite(n)) return '—';
    return Number(n).toLocaleString(locale(), {maximumFractionDigits: digits, minimumFractionDigits: digits});
  }

  function fmtPercent(x) { return (x === null || x === undefined || !isFinite(x)) ? '—' : fmtNumber(x * 100, 0) + '\u202f%'; }

  /** "2026-11-23" (from a date input) -> Unix ms at local midnight; endOfDay adds a day. */
  function dateInputToMs(value, endOfDay) {
    if (!value) return null;
    const d = new Date(value + 'T00:00:00');
    if (isNaN(d)) return null;
    return d.getTime() + (endOfDay ? 86400000 - 1 : 0);
  }

  function msToDateInput(ms) {
    if (ms === null || ms === undefined || ms === '') return '';
    const d = new Date(Number(ms));
    if (isNaN(d)) return '';
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  // ---------- i18n ----------

  function lang() { return window.LANG || 'ru'; }
  function t(key, params) { return window.t ? window.t(key, params) : key; }

  function setLang(l) {
    document.cookie = `lab_lang=${l === 'en' ? 'en' : 'ru'}; path=/; max-age=31536000; SameSite=Lax`;
    location.reload();
  }

  // ---------- toasts ----------

  function toast(message, kind = 'error', timeoutMs = 6000) {
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

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || code || String(status));
      this.status = status; this.code = code;
    }
  }

  function loginUrl() {
    const next = location.pathname + location.search + location.hash;
    return '/login?next=' + encodeURIComponent(next);
  }

  async function getCsrf(force) {
    if (csrf && !force) return csrf;
    if (force) mePromise = null;
    const me = await loadMe();
    return me ? me.csrf : null;
  }

  /**
   * api('POST', '/sessions/1/analyze', {}) -> parsed JSON (null for 204).
   * opts: {quiet: [status...] | true} suppresses the toast for those statuses,
   * {noRedirect: true} keeps a 401 from leaving the page, {raw: true} returns the Response.
   */
  async function api(method, path, body, opts = {}) {
    const url = path.startsWith('/api/') ? path : API + path;
    const headers = {'Accept': 'application/json'};
    if (body !== undefined && body !== null) headers['Content-Type'] = 'application/json';
    const unsafe = !['GET', 'HEAD'].includes(method);
    if (unsafe && opts.csrf !== false) {
      const token = await getCsrf();
      if (token) headers['X-CSRF-Token'] = token;
    }
    let res;
    try {
      res = await fetch(url, {
        method, headers, credentials: 'same-origin',
        body: body !== undefined && body !== null ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      if (!opts.quiet) toast(t('error.network'));
      throw new ApiError(0, 'network', t('error.network'));
    }
    if (res.status === 401 && !opts.noRedirect) {
      location.assign(loginUrl());
      throw new ApiError(401, 'unauthorized', t('error.unauthorized'));
    }
    if (!res.ok) {
      let info = {};
      try { info = await res.json(); } catch (_) { /* not JSON */ }
      // A stale token (server restarted, logged in elsewhere): fetch a fresh one and try once more.
      if (res.status === 403 && info.error === 'csrf' && unsafe && !opts.retried) {
        await getCsrf(true);
        return api(method, path, body, {...opts, retried: true});
      }
      const message = info.message || t('error.status', {status: res.status});
      const quiet = opts.quiet === true || (Array.isArray(opts.quiet) && opts.quiet.includes(res.status));
      if (!quiet) toast(message);
      throw new ApiError(res.status, info.error || 'http_' + res.status, message);
    }
    if (opts.raw) return res;
    if (res.status === 204) return null;
    const type = res.headers.get('Content-Type') || '';
    if (type.includes('json')) return res.json();
    return res.text();
  }

  /** GET /me once per page; null when not logged in (no redirect). */
  function loadMe() {
    if (!mePromise) {
      mePromise = api('GET', '/me', null, {noRedirect: true, quiet: [401]})
        .then((me) => { csrf = me.csrf; return me; })
        .catch((e) => { mePromise = null; if (e.status === 401) return null; throw e; });
    }
    return mePromise;
  }

  function setCsrf(token) { csrf = token; }

  // ---------- roles ----------

  const RIGHTS = {
    raw: ['admin', 'researcher', 'operator'],
    tag: ['admin', 'researcher'],
    jobs: ['admin', 'operator'],
    edit_segment: ['admin', 'researcher', 'operator'],
    withdraw: ['admin'],
    admin: ['admin'],
  };
  let currentUser = null;
  function can(right) { return !!currentUser && (RIGHTS[right] || []).includes(currentUser.role); }
  function user() { return currentUser; }

  // ---------- job events (SSE) ----------

  const jobListeners = new Set();
  let source = null;
  function onJob(fn) {
    jobListeners.add(fn);
    if (!source && typeof EventSource !== 'undefined') {
      source = new EventSource(API + '/jobs/events', {withCredentials: true});
      source.addEventListener('job', (ev) => {
        let job;
        try { job = JSON.parse(ev.data); } catch (_) { return; }
        for (const l of jobListeners) { try { l(job); } catch (e) { console.error(e); } }
      });
      // EventSource reconnects by itself; nothing to do on error.
    }
    return () => jobListeners.delete(fn);
  }

  const ACTIVE_JOB = new Set(['queued', 'running']);

  /** A progress bar element for a job-ish {status, progress, stage, message}. */
  function progressBar(state) {
    const p = Math.max(0, Math.min(1, Number(state && state.progress) || 0));
    const status = (state && state.status) || 'none';
    const bar = el('div', {class: ['progress', 'progress-' + status], role: 'progressbar',
      'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(p * 100))},
    el('div', {class: 'progress-fill', style: {width: (status === 'done' ? 100 : p * 100) + '%'}}));
    return bar;
  }

  // ---------- header ----------

  function renderHeader(me) {
    let header = document.getElementById('app-header');
    if (!header) { header = el('header', {id: 'app-header'}); document.body.prepend(header); }
    clear(header);
    const page = document.body.dataset.page;
    const nav = el('nav', {class: 'main-nav', 'aria-label': t('nav.label')});
    const link = (href, key, name) => el('a', {href, class: page === name ? 'active' : null,
      'aria-current': page === name ? 'page' : null}, t(key));
    if (me) {
      nav.append(link('/', 'nav.sessions', 'sessions'), link('/findings', 'nav.findings', 'findings'));
      // Transcript search reads raw recordings: every role but the viewer.
      if (RIGHTS.raw.includes(me.user.role)) nav.append(link('/search', 'nav.search', 'search'));
      if (me.user.role === 'admin') nav.append(link('/admin', 'nav.admin', 'admin'));
    }
    const langSel = el('div', {class: 'lang-switch', role: 'group', 'aria-label': t('nav.language')},
      ['ru', 'en'].map((l) => el('button', {type: 'button', class: lang() === l ? 'active' : null,
        'aria-pressed': String(lang() === l), dataset: {lang: l}, onclick: () => setLang(l)}, l.toUpperCase())));
    const right = el('div', {class: 'header-right'}, langSel);
    if (me) {
      right.prepend(
        el('span', {class: 'user-name', title: me.user.login},
          me.user.name || me.user.login, ' ', el('span', {class: 'role-badge'}, t('role.' + me.user.role))),
        el('button', {type: 'button', id: 'logout', class: 'btn btn-small btn-ghost', onclick: logout}, t('nav.logout')));
    }
    header.append(el('a', {href: '/', class: 'brand'}, el('span', {class: 'brand-mark'}, 'UX'), t('app.title')), nav, right);
  }

  async function logout() {
    try { await api('POST', '/logout', {}, {noRedirect: true, quiet: [401]}); } catch (_) { /* go anyway */ }
    location.assign('/login');
  }

  // ---------- boot ----------

  function page(name, init) { pages[name] = init; }

  function main() {
    let m = document.getElementById('main');
    if (!m) { m = el('main', {id: 'main'}); document.body.appendChild(m); }
    return m;
  }

  function setTitle(text) { document.title = text ? `${text} — ${t('app.title')}` : t('app.title'); }

  async function boot() {
    document.documentElement.lang = lang();
    const name = document.body.dataset.page || 'sessions';
    const id = document.body.dataset.id || '';
    const init = pages[name];
    const ctx = {id, main: main()};
    if (name === 'login') {
      renderHeader(null);
      if (init) await init(ctx);
      return;
    }
    let me;
    try { me = await loadMe(); } catch (e) { renderHeader(null); main().append(el('p', {class: 'empty'}, e.message)); return; }
    if (!me) { location.assign(loginUrl()); return; }
    currentUser = me.user;
    renderHeader(me);
    if (!init) { main().append(el('p', {class: 'empty'}, t('error.no_page'))); return; }
    try { await init({...ctx, me}); } catch (e) {
      console.error(e);
      if (!(e instanceof ApiError)) toast(e.message || String(e));
      // A page that could not even start (e.g. 404 for its object) says why in place.
      if (!ctx.main.children.length) ctx.main.append(el('p', {class: 'empty page-error'}, e.message || String(e)));
    }
  }

  // Page scripts are deferred after this one: they have all run by DOMContentLoaded
  // (readyState is already "interactive" while deferred scripts run, so it cannot tell).
  let booted = false;
  const start = () => { if (!booted) { booted = true; boot(); } };
  if (document.readyState === 'complete') setTimeout(start, 0);
  else { document.addEventListener('DOMContentLoaded', start); window.addEventListener('load', start); }

  // ---------- small shared widgets ----------

  /** A <select> with [value,label] options. */
  function select(name, options, value, attrs = {}) {
    return el('select', {name, ...attrs},
      options.map(([v, label]) => el('option', {value: v, selected: String(v) === String(value ?? '')}, label)));
  }

  function modal(titleText, body, {onClose, id} = {}) {
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

  /** Labels of things the API names by id. */
  const SEVERITY = [1, 2, 3, 4];
  const EMOTIONS = ['positive', 'neutral', 'negative'];
  function severityBadge(n) {
    const s = Number(n) || 0;
    return el('span', {class: ['sev', 'sev-' + s], title: t('severity.' + s)}, String(s || '?'), ' ', el('span', {class: 'sev-label'}, t('severity.' + s)));
  }
  function emotionBadge(e) {
    return el('span', {class: ['emo', 'emo-' + e], title: t('emotion.' + e)}, t('emotion.' + e));
  }
  function detectorLabel(d) {
    const key = 'detector.' + d;
    const v = t(key);
    return v === key ? d : v;
  }
  let categoriesPromise = null;
  function categories() {
    if (!categoriesPromise) {
      categoriesPromise = api('GET', '/categories', null, {quiet: true})
        .then((r) => r.categories || [])
        .catch(() => ['navigation', 'comprehension', 'form_input', 'error', 'content', 'trust', 'performance', 'accessibility', 'other']
          .map((id) => ({id, ru: t('category.' + id), en: t('category.' + id)})));
    }
    return categoriesPromise;
  }
  function categoryLabel(id, list) {
    const c = (list || []).find((x) => x.id === id);
    if (c) return (lang() === 'en' ? c.en : c.ru) || id;
    const key = 'category.' + id;
    const v = t(key);
    return v === key ? String(id) : v;
  }

  /** Query string from an object, skipping empty values. */
  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') u.set(k, v);
    const s = u.toString();
    return s ? '?' + s : '';
  }

  window.Lab = {
    el, append, add, refill, clear, safeUrl, fmtMs, parseTime, fmtDuration, fmtDate, fmtNumber, fmtPercent,
    dateInputToMs, msToDateInput, t, lang, setLang, toast, api, ApiError, loadMe, setCsrf, can, user,
    onJob, ACTIVE_JOB, progressBar, page, main, setTitle, select, modal, SEVERITY, EMOTIONS,
    severityBadge, emotionBadge, detectorLabel, categories, categoryLabel, qs, API,
  };
})();
