/*
 * Page-world half of the injected probe, for lab pages only (file:// or an
 * origin in the station's recording.probe_origins). The probe itself runs in
 * an isolated world the page cannot reach; this gives a lab page
 * window.__labProbe.emit(kind, data) and window.__labProbe.ready, forwarded to
 * the probe as DOM events whose detail is a JSON string (events cross worlds,
 * objects do not). On any other page it defines nothing, and the probe ignores
 * these events there, so a third-party site cannot emit through it. On every
 * page it forwards the page's script errors (below).
 */
(function () {
  'use strict';
  // On every page: the page's own script errors. An uncaught exception's
  // ErrorEvent reaches only the world whose script threw, so the probe (in
  // its isolated world) never sees the page's; they are forwarded to it as
  // DOM events. A page could forge these too, which says no more than
  // throwing would, and the probe rate-limits them.
  try {
    // Runs once per document, before the page's scripts; it leaves no global.
    if (window.top === window) {
      const forward = (detail) => {
        try {
          window.dispatchEvent(new CustomEvent('__lab_probe_page_error', { detail: JSON.stringify(detail) }));
        } catch (_) { /* never the page's problem */ }
      };
      const at = (ev) => performance.timeOrigin + (ev.timeStamp > 0 ? ev.timeStamp : performance.now());
      window.addEventListener('error', (ev) => {
        // Resource errors target an element; the probe sees those itself.
        if (!ev.isTrusted || (ev.target && ev.target !== window)) return;
        let message;
        try { message = String(ev.message || (ev.error && ev.error.message) || 'error'); } catch (_) { message = 'error'; }
        forward({ message, source: ev.filename || null, line: ev.lineno || null, col: ev.colno || null, t: at(ev) });
      }, true);
      window.addEventListener('unhandledrejection', (ev) => {
        const r = ev.reason;
        if (!ev.isTrusted || (r && r.labProbe)) return; // an emit() rejection its caller ignored
        let message;
        try { message = String((r && r.message) || r); } catch (_) { message = 'unprintable rejection reason'; }
        forward({ message, unhandled_rejection: true, t: at(ev) });
      }, true);
    }
  } catch (_) { /* the page must never see a probe failure */ }
  try {
    const LAB_ORIGINS = __LAB_ORIGINS__;
    if (window.top !== window || window.__labProbe) return;
    if (location.protocol !== 'file:' && LAB_ORIGINS.indexOf(location.origin) < 0) return;
    const waiting = new Map();
    let next = 1, readyResolve;
    const ready = new Promise((resolve) => { readyResolve = resolve; });
    window.addEventListener('__lab_probe_ready', () => readyResolve());
    window.addEventListener('__lab_probe_reply', (ev) => {
      if (typeof ev.detail !== 'string') return;
      const m = JSON.parse(ev.detail);
      const w = waiting.get(m.id);
      if (!w) return;
      waiting.delete(m.id);
      if (m.ok) w.resolve({ seq: m.seq, t_ns: m.t_ns });
      else w.reject(Object.assign(new Error('lab probe: ' + m.error), { labProbe: true }));
    });
    const emit = (kind, data) => new Promise((resolve, reject) => {
      const id = next++;
      const t = performance.timeOrigin + performance.now();
      let detail;
      try { detail = JSON.stringify({ id, kind: String(kind), data: data == null ? {} : data, t }); } catch (_) {
        reject(Object.assign(new Error('lab probe: event data is not serialisable'), { labProbe: true }));
        return;
      }
      waiting.set(id, { resolve, reject });
      window.dispatchEvent(new CustomEvent('__lab_probe_emit', { detail }));
    });
    window.__labProbe = Object.freeze({ emit, ready, version: 1 });
  } catch (_) { /* the page must never see a probe failure */ }
})();
