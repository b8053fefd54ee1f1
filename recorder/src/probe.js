/*
 * Lab probe: the recorder injects this into the page a participant works in.
 *
 * It records what the participant does (navigation, clicks and whether a click
 * changed anything, focus, typing summaries, changes, scrolling, script and
 * resource errors, validation messages, submits, tab visibility) and sends each
 * event to the recorder over a WebSocket, stamped with this browser's clock.
 * The recorder maps those stamps onto the session clock with round-trip
 * samples the probe measures itself, so network delay does not move events.
 *
 * Two ways in:
 *  - Injected by the recorder over DevTools into an isolated world (browser.rs),
 *    with window.__LAB_PROBE_CONFIG = {endpoint, labOrigins} set in that world.
 *    The endpoint URL carries the per-recording token; page scripts cannot read
 *    this world's globals, so the site under test can neither forge events
 *    through the probe nor present the token itself. Lab pages (file:// or an
 *    origin in labOrigins) get window.__labProbe.emit through a small
 *    main-world bridge that talks to this world with DOM events.
 *  - Included by a lab prototype as <script src="http://127.0.0.1:7700/probe.js">
 *    in the page's own world; it then connects to ws://<that host>/ws, and the
 *    recorder accepts its events only if the page's origin is allow-listed in
 *    the station config. It stands down if the injected probe is present.
 *
 * Protocol (JSON text frames; -> to the recorder, <- from it):
 *   -> hello {client, url}                                   once per connection
 *   -> sync {id, t0}   <- sync {id, t0, ts_ns}   -> sync_result {t0, t1, ts_ns}
 *        8 sequential exchanges on every (re)connect, then 3 every 10 s
 *   -> event {id, event: {source: "browser", kind, data, t}}
 *   <- ack {id, seq, t_ns}   or   <- reject {id, error, retry_after_ms?}
 * Events wait in memory until the connection's first sync burst is done and
 * stay there until acknowledged, so a dropped connection resends them; a
 * reject with retry_after_ms (rate limit) is retried after that delay.
 *
 * Masking rule: typed text never leaves the page. Input and change events carry
 * only the length, a coarse kind (digits / letters / mixed) and an edit count.
 * The value itself is sent only when the field or an ancestor has the attribute
 * data-lab-record-value (a field the researcher chose to record), and never for
 * password fields. Click text of editable elements is withheld the same way.
 *
 * Only events the browser itself generated (isTrusted) are recorded: a page
 * that dispatches synthetic clicks does not put them in the recording.
 *
 * The probe lives inside third-party pages: it defines nothing in the page's
 * world when injected, swallows its own errors and uses passive listeners only.
 */
(function () {
  'use strict';
  try {
    const config = window.__LAB_PROBE_CONFIG;
    const injected = !!(config && typeof config.endpoint === 'string');
    if (window.__labProbe) return;
    if (window.top !== window && window.__LAB_PROBE_ALL_FRAMES !== true) return;
    // The station console's own self-report page (shown in the station
    // browser between tasks): the answers are recorded as participant
    // events; the clicks that give them are not the service's.
    if (/^(127\.0\.0\.1|localhost|\[::1\])$/.test(location.hostname) && location.pathname === '/participant') return;
    // Included by a page that the recorder also instruments: the injected probe
    // answers this event by cancelling it, and records the page itself.
    if (!injected && !window.dispatchEvent(new Event('__lab_probe_present', { cancelable: true }))) return;
    const ENDPOINT = injected ? config.endpoint : endpoint();
    if (!ENDPOINT) return;
    const labOrigins = injected && Array.isArray(config.labOrigins) ? config.labOrigins : [];
    const labPage = injected && (location.protocol === 'file:' || labOrigins.indexOf(location.origin) >= 0);
    install(ENDPOINT, injected, labPage);
  } catch (_) { /* the page must never see a probe failure */ }

  function endpoint() {
    // currentScript is only set while the script first runs, so read it now.
    const src = document.currentScript && document.currentScript.src;
    if (!src) return null;
    const u = new URL(src, location.href);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    return (u.protocol === 'https:' ? 'wss://' : 'ws://') + u.host + '/ws';
  }

  function install(ENDPOINT, injected, labPage) {
    const QUEUE_MAX = 5000, FIRST_BURST = 8, LATER_BURST = 3, BURST_EVERY_MS = 10000;
    const SYNC_TIMEOUT_MS = 3000, BACKOFF_MIN_MS = 250, BACKOFF_MAX_MS = 5000;
    const EFFECT_WINDOW_MS = 1000, INPUT_DEBOUNCE_MS = 600, SCROLL_EVERY_MS = 250;
    // A field marked invalid again this soon after a click or submit is that
    // attempt's error (see the aria-invalid observer).
    const COMMIT_WINDOW_MS = 1000;
    let lastCommit = -Infinity;
    const edited = new WeakSet(); // fields changed since their last recorded error

    const now = () => performance.timeOrigin + performance.now();
    // Current browsers give event.timeStamp relative to timeOrigin. A zero or an
    // old-style epoch stamp would land in the future, so those fall back to now().
    const evTime = (ev) => {
      const ts = ev && ev.timeStamp;
      const t = ts > 0 ? performance.timeOrigin + ts : 0;
      return t > 0 && t <= now() + 1000 ? t : now();
    };
    const guard = (fn) => { try { return fn(); } catch (_) { return undefined; } };
    const clean = (s, max) => String(s == null ? '' : s).replace(/\s+/g, ' ').trim().slice(0, max);
    const attr = (el, name) => (el && el.getAttribute ? el.getAttribute(name) : null);
    const num = (v) => (typeof v === 'number' && isFinite(v) ? v : 0);
    const elementOf = (n) => (n && n.nodeType === 1 ? n : n && n.nodeType === 3 ? n.parentElement : null);
    // Synthetic events (dispatched by page scripts) are not the participant's doing.
    const on = (target, type, fn) =>
      target.addEventListener(type, (ev) => { if (ev.isTrusted) guard(() => fn(ev)); }, { capture: true, passive: true });
    const probeError = (msg) => Object.assign(new Error('lab probe: ' + msg), { labProbe: true });

    const CLIENT_ID = 'tab-' + randomId(10);
    let readyResolve;
    const ready = new Promise((resolve) => { readyResolve = resolve; });
    // Set first: a second injection of the script into this world sees it and stops.
    window.__labProbe = Object.freeze({ emit, client: CLIENT_ID, ready, version: 1 });
    if (injected) {
      // A copy of the probe included by the page itself stands down (see the top).
      window.addEventListener('__lab_probe_present', (ev) => ev.preventDefault(), true);
      if (labPage) bridge();
      // The page's script errors, forwarded by the main-world half (an
      // uncaught exception's event never reaches this world).
      window.addEventListener('__lab_probe_page_error', (ev) => guard(() => {
        if (typeof ev.detail !== 'string' || ev.detail.length > 16384) return;
        const m = JSON.parse(ev.detail);
        const text = (v, max) => (typeof v === 'string' ? v.slice(0, max) : null);
        const data = { message: text(m.message, 1000) || 'error', source: text(m.source, 2000),
          line: typeof m.line === 'number' ? m.line : null, col: typeof m.col === 'number' ? m.col : null };
        if (m.unhandled_rejection === true) data.unhandled_rejection = true;
        const t = typeof m.t === 'number' && isFinite(m.t) && m.t > 0 && m.t <= now() + 1000 ? m.t : now();
        record('js_error', data, t);
      }));
    }

    // The main-world half (browser.rs) forwards window.__labProbe.emit calls of
    // a lab page here as JSON strings (only primitives cross worlds), and gets
    // each outcome and the ready signal back the same way.
    function bridge() {
      const reply = (m) => window.dispatchEvent(new CustomEvent('__lab_probe_reply', { detail: JSON.stringify(m) }));
      window.addEventListener('__lab_probe_emit', (ev) => guard(() => {
        if (typeof ev.detail !== 'string') return;
        const m = JSON.parse(ev.detail);
        const t = typeof m.t === 'number' && isFinite(m.t) ? m.t : now();
        record(String(m.kind), m.data == null ? {} : m.data, t,
          (r) => reply({ id: m.id, ok: true, seq: r.seq, t_ns: r.t_ns }),
          (e) => reply({ id: m.id, ok: false, error: String(e && e.message) }));
      }));
      ready.then(() => window.dispatchEvent(new CustomEvent('__lab_probe_ready')));
    }

    function randomId(n) {
      const abc = 'abcdefghijklmnopqrstuvwxyz0123456789';
      const bytes = crypto.getRandomValues(new Uint8Array(n));
      return Array.from(bytes, (b) => abc[b % abc.length]).join('');
    }

    /* ---- transport: queue, WebSocket, clock sync ---- */

    const pending = new Map(); // local id -> {text, sentOn, resolve, reject}; Map keeps send order
    let nextLocalId = 1, dropped = 0;
    let ws = null, conn = 0, connReady = false, backoff = BACKOFF_MIN_MS, reconnectTimer = 0;
    let syncLeft = 0, syncId = 0, syncWaiting = 0, syncT0 = 0, syncTimer = 0;

    function emit(kind, data) {
      return new Promise((resolve, reject) => record(String(kind), data == null ? {} : data, now(), resolve, reject));
    }

    // Kinds whose number the page itself controls (it can throw, fail loads,
    // retitle or replace its URL in a loop): rate-limited, and the first to
    // go when the queue is full, so a hostile or broken page cannot push the
    // participant's own clicks and input out of the recording.
    const PAGE_KINDS = new Set(['js_error', 'resource_error', 'navigation']);
    // One bucket per kind, so a flood of errors cannot silence navigations.
    const PAGE_BURST = 50, PAGE_PER_SEC = 10;
    const pageBuckets = new Map();
    const pageKindAllowed = (kind) => {
      const t = now();
      const b = pageBuckets.get(kind) || { tokens: PAGE_BURST, at: t };
      b.tokens = Math.min(PAGE_BURST, b.tokens + (t - b.at) / 1000 * PAGE_PER_SEC);
      b.at = t;
      pageBuckets.set(kind, b);
      if (b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    };
    // Strings cut inside an emoji (or made so by the page) would carry a lone
    // surrogate, which JSON readers refuse: sent as U+FFFD instead.
    const wellFormed = (_k, v) => (typeof v === 'string' && v.toWellFormed ? v.toWellFormed() : v);

    // Drops are reported in a `probe_dropped` event a second after they start
    // (and after each clock sync), so the recording says what it is missing.
    let dropReport = 0;
    const reportDrops = () => {
      dropReport = 0;
      if (dropped > 0) {
        const n = dropped;
        dropped = 0;
        record('probe_dropped', { dropped: n }, now());
      }
    };

    function record(kind, data, t, resolve, reject) {
      if (PAGE_KINDS.has(kind) && !pageKindAllowed(kind)) {
        dropped++;
        if (!dropReport) dropReport = setTimeout(() => guard(reportDrops), 1000);
        if (reject) reject(probeError('dropped: too many ' + kind + ' events'));
        return;
      }
      let text;
      try {
        text = JSON.stringify({ type: 'event', id: nextLocalId, event: { source: 'browser', kind, data, t } }, wellFormed);
      } catch (e) {
        if (reject) reject(probeError('event data is not serialisable'));
        return;
      }
      const id = nextLocalId++;
      if (pending.size >= QUEUE_MAX) {
        // The oldest page-controlled event goes first; the participant's own
        // input only when nothing else is left.
        let victim = null;
        for (const [k, v] of pending) { if (PAGE_KINDS.has(v.kind)) { victim = k; break; } }
        if (victim === null) victim = pending.keys().next().value;
        const old = pending.get(victim);
        pending.delete(victim);
        dropped++;
        if (old.reject) old.reject(probeError('dropped: queue full'));
      }
      const entry = { text, kind, sentOn: 0, resolve, reject };
      pending.set(id, entry);
      if (connReady && rawSend(text)) entry.sentOn = conn;
    }

    function rawSend(text) {
      if (!ws || ws.readyState !== 1) return false;
      try { ws.send(text); return true; } catch (_) { return false; }
    }

    // Sends everything not yet sent on this connection: new events and, after a
    // reconnect, the ones the previous connection never acknowledged.
    function flush() {
      for (const e of pending.values()) if (e.sentOn !== conn && rawSend(e.text)) e.sentOn = conn;
    }

    function connect() {
      reconnectTimer = 0;
      let sock;
      try { sock = new WebSocket(ENDPOINT); } catch (_) { retryLater(); return; }
      ws = sock; conn++; connReady = false; syncLeft = 0;
      sock.onopen = () => guard(() => {
        rawSend(JSON.stringify({ type: 'hello', client: CLIENT_ID, url: location.href }));
        startBurst(FIRST_BURST);
      });
      sock.onmessage = (ev) => guard(() => onMessage(sock, ev.data));
      sock.onclose = () => guard(() => {
        if (ws !== sock) return;
        ws = null; connReady = false; syncLeft = 0;
        clearTimeout(syncTimer);
        retryLater();
      });
    }

    function retryLater() {
      if (reconnectTimer) return;
      reconnectTimer = setTimeout(() => guard(connect), backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }

    function startBurst(n) {
      if (syncLeft > 0) return;
      syncLeft = n;
      sendSync();
    }

    function sendSync() {
      syncWaiting = ++syncId;
      syncT0 = now();
      rawSend(JSON.stringify({ type: 'sync', id: syncWaiting, t0: syncT0 }));
      clearTimeout(syncTimer);
      syncTimer = setTimeout(() => guard(syncStep), SYNC_TIMEOUT_MS); // a lost reply must not stall the burst
    }

    function onMessage(sock, raw) {
      if (typeof raw !== 'string') return;
      const m = JSON.parse(raw);
      if (!m || typeof m !== 'object') return;
      if (m.type === 'sync') {
        if (sock !== ws || m.id !== syncWaiting) return;
        const t1 = now();
        // ts_ns is integer nanoseconds: copy its digits verbatim rather than round-trip a double.
        const digits = /"ts_ns"\s*:\s*(-?\d+)\s*[,}]/.exec(raw);
        if (digits) {
          rawSend('{"type":"sync_result","t0":' + JSON.stringify(syncT0) + ',"t1":' + JSON.stringify(t1) +
            ',"ts_ns":' + digits[1] + '}');
        }
        syncStep();
      } else if (m.type === 'ack' || m.type === 'reject') {
        const e = pending.get(m.id); // an ack for a resent event may arrive twice: the second finds nothing
        if (!e) return;
        if (m.type === 'reject' && typeof m.retry_after_ms === 'number') { // rate limit: keep it, send again later
          e.sentOn = 0;
          setTimeout(() => guard(() => { if (connReady) flush(); }), Math.min(Math.max(m.retry_after_ms, 10), 60000));
          return;
        }
        pending.delete(m.id);
        if (m.type === 'ack') { if (e.resolve) e.resolve({ seq: m.seq, t_ns: m.t_ns }); }
        else if (e.reject) e.reject(probeError(String(m.error || 'rejected')));
      }
    }

    function syncStep() {
      clearTimeout(syncTimer);
      syncWaiting = 0;
      if (--syncLeft > 0) { sendSync(); return; }
      syncLeft = 0;
      if (!connReady) { // first burst of this connection: the recorder can now map our stamps
        connReady = true;
        backoff = BACKOFF_MIN_MS;
        readyResolve();
      }
      reportDrops();
      flush();
    }

    /* ---- describing elements ---- */

    function cssPath(el) {
      if (!el || el.nodeType !== 1) return '';
      const esc = window.CSS && CSS.escape ? CSS.escape : (s) => String(s).replace(/[^\w-]/g, '\\$&');
      const quote = (s) => String(s).replace(/["\\]/g, '\\$&');
      const uniqueId = (e) => {
        const id = attr(e, 'id');
        return id && guard(() => document.querySelectorAll('#' + esc(id)).length === 1) ? '#' + esc(id) : null;
      };
      const own = uniqueId(el);
      if (own) return own.slice(0, 300);
      for (const a of ['data-testid', 'data-test']) {
        const v = attr(el, a);
        if (v) return ('[' + a + '="' + quote(v) + '"]').slice(0, 300);
      }
      const parts = [];
      for (let cur = el; cur && cur.nodeType === 1 && parts.length < 5; cur = cur.parentElement) {
        const idSel = cur !== el && uniqueId(cur);
        if (idSel) { parts.unshift(idSel); break; }
        let part = cur.localName;
        const name = attr(cur, 'name');
        if (name) part += '[name="' + quote(name) + '"]';
        else if (cur.parentElement) {
          let same = 0, index = 0;
          for (const sib of cur.parentElement.children) {
            if (sib.localName === cur.localName) { same++; if (sib === cur) index = same; }
          }
          if (same > 1) part += ':nth-of-type(' + index + ')';
        }
        parts.unshift(part);
      }
      return parts.join(' > ').slice(0, 300);
    }

    // Text of a node without layout and without anything a user may have typed:
    // form controls and editable regions are skipped.
    function plainText(node, max) {
      let out = '';
      const walk = (n) => {
        for (let c = n.firstChild; c && out.length < max * 4; c = c.nextSibling) {
          if (c.nodeType === 3) out += c.nodeValue;
          else if (c.nodeType === 1 && !/^(select|textarea|input|script|style|noscript|template)$/.test(c.localName) &&
            !c.isContentEditable) { walk(c); out += ' '; }
        }
      };
      walk(node);
      return clean(out, max);
    }

    function textOfIds(ids, max) {
      return clean(String(ids || '').split(/\s+/).filter(Boolean)
        .map((id) => { const e = document.getElementById(id); return e ? plainText(e, max) : ''; }).join(' '), max);
    }

    function clickText(el) {
      const tag = el.localName;
      if (tag === 'input' && (el.type === 'button' || el.type === 'submit')) return clean(el.value, 80);
      if (tag === 'input' || tag === 'textarea' || tag === 'select' || el.isContentEditable) {
        return clean(attr(el, 'placeholder') || attr(el, 'aria-label'), 80);
      }
      // innerText needs layout and would include typed text of editable descendants:
      // use it only for small, non-editable content.
      const raw = el.textContent || '';
      if (raw.length <= 1000 && typeof el.innerText === 'string' && !el.querySelector('[contenteditable]')) {
        return clean(el.innerText, 80);
      }
      return plainText(el, 80);
    }

    const fieldName = (el) => attr(el, 'name') || attr(el, 'id') || null;
    const isField = (el) => !!el && (/^(input|textarea|select)$/.test(el.localName) || el.isContentEditable === true);
    const fieldType = (el) => (/^(input|textarea|select)$/.test(el.localName) ? el.type || el.localName : 'contenteditable');
    const isPassword = (el) => el.type === 'password' || /password/i.test(attr(el, 'autocomplete') || '');

    function labelOf(el) {
      const lbl = el.labels && el.labels[0];
      const text = (lbl && plainText(lbl, 80)) || clean(attr(el, 'aria-label'), 80) ||
        textOfIds(attr(el, 'aria-labelledby'), 80);
      return text || null;
    }

    function valueKind(v) {
      if (!v) return 'empty';
      if (/^[\p{N}\s]+$/u.test(v) && /\p{N}/u.test(v)) return 'digits';
      if (/^[\p{L}\s]+$/u.test(v) && /\p{L}/u.test(v)) return 'letters';
      return 'mixed';
    }

    // What input and change events say about a field; see the masking rule above.
    function fieldInfo(el) {
      const value = el.isContentEditable && !('value' in el) ? el.innerText || '' : String(el.value == null ? '' : el.value);
      const info = { selector: cssPath(el), field: fieldName(el), type: fieldType(el), masked: true,
        value_length: value.length, value_kind: valueKind(value) };
      if (!isPassword(el) && el.closest('[data-lab-record-value]')) {
        info.masked = false;
        info.value = value.slice(0, 200);
      }
      return info;
    }

    /* ---- navigation ---- */

    let lastTitle = document.title, lastNavHref = '';
    const watchers = new Set(); // open click_effect windows

    function nav(reason, t) {
      lastTitle = document.title;
      lastNavHref = location.href;
      for (const w of watchers) if (location.href !== w.href) w.urlChanged = true;
      const data = { url: location.href, title: document.title, reason };
      if (reason === 'load') data.referrer = document.referrer;
      record('navigation', data, t || now());
    }

    const navApi = typeof window.navigation === 'object' && window.navigation &&
      typeof window.navigation.addEventListener === 'function';
    if (navApi) {
      // The Navigation API reports every same-document navigation (pushState,
      // replaceState, back/forward, fragment links) to every world, so it works
      // from the isolated world, where wrapping history.pushState would not.
      let navHref = location.href;
      window.navigation.addEventListener('currententrychange', (ev) => guard(() => {
        const before = navHref;
        navHref = location.href;
        const type = ev.navigationType;
        // replaceState that keeps the URL only rewrites history.state; frameworks do that constantly.
        if (type === 'reload' || (type === 'replace' && location.href === before)) return;
        const onlyHash = location.href.split('#')[0] === before.split('#')[0] && location.href !== before;
        nav(type === 'traverse' ? 'pop' : type === 'replace' ? 'replace' : onlyHash ? 'hash' : 'push');
      }));
    } else {
      for (const [name, reason] of [['pushState', 'push'], ['replaceState', 'replace']]) {
        const orig = history[name];
        if (typeof orig !== 'function') continue;
        history[name] = function () {
          const before = location.href;
          const result = orig.apply(this, arguments); // the page's own errors propagate unchanged
          // replaceState that keeps the URL only rewrites history.state; frameworks do that constantly.
          if (reason === 'push' || location.href !== before) guard(() => nav(reason));
          return result;
        };
      }
      on(window, 'popstate', (ev) => nav('pop', evTime(ev)));
      // Fragment navigation also fires popstate; report the hash change only if that did not.
      on(window, 'hashchange', (ev) => { if (location.href !== lastNavHref) nav('hash', evTime(ev)); });
    }
    on(window, 'pageshow', (ev) => {
      if (!ev.persisted) return; // restored from the back/forward cache: a new visit
      nav('load', evTime(ev));
      if (!ws) { clearTimeout(reconnectTimer); backoff = BACKOFF_MIN_MS; connect(); }
    });
    const watchTitle = () => {
      if (!document.head || typeof MutationObserver !== 'function') return;
      new MutationObserver(() => guard(() => { if (document.title !== lastTitle) nav('title'); }))
        .observe(document.head, { subtree: true, childList: true, characterData: true });
      if (document.title !== lastTitle) nav('title');
    };
    if (document.head) watchTitle();
    else document.addEventListener('DOMContentLoaded', () => guard(watchTitle), { once: true });

    /* ---- modal dialogs: a single-page app's steps without URLs ---- */

    // Open, visible dialogs; each opening and closing is an event with the
    // dialog's title (its accessible name or first heading), looked at a
    // moment after the DOM settles.
    const DIALOG = 'dialog[open], [role="dialog"], [role="alertdialog"], [aria-modal="true"]';
    const openDialogs = new Map(); // element -> title
    let dialogTimer = null, dialogT = 0;
    function dialogTitle(d) {
      const heading = d.querySelector('h1, h2, h3, h4, [role="heading"]');
      return clean(attr(d, 'aria-label'), 120) || textOfIds(attr(d, 'aria-labelledby'), 120) ||
        (heading ? plainText(heading, 120) : '') || plainText(d, 60);
    }
    const shown = (d) => !!(d.getClientRects().length && getComputedStyle(d).visibility !== 'hidden' &&
      !d.closest('[aria-hidden="true"], [hidden]'));
    function checkDialogs() {
      dialogTimer = null;
      const now = new Set([...document.querySelectorAll(DIALOG)].filter(shown));
      for (const [d, title] of openDialogs) {
        if (now.has(d)) continue;
        openDialogs.delete(d);
        record('dialog', { action: 'close', title, selector: cssPath(d) }, dialogT);
      }
      for (const d of now) {
        if (openDialogs.has(d)) continue;
        const title = dialogTitle(d);
        openDialogs.set(d, title);
        record('dialog', { action: 'open', title, selector: cssPath(d) }, dialogT);
      }
    }
    if (typeof MutationObserver === 'function') {
      // Stamped with the first change of the batch, not the look 100 ms later.
      new MutationObserver(() => {
        if (dialogTimer) return;
        dialogT = now();
        dialogTimer = setTimeout(() => guard(checkDialogs), 100);
      })
        .observe(document, { childList: true, subtree: true, attributes: true,
          attributeFilter: ['open', 'style', 'class', 'hidden', 'aria-hidden', 'role', 'aria-modal'] });
    }
    const firstDialogLook = () => guard(() => { dialogT = now(); checkDialogs(); });
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', firstDialogLook, { once: true });
    else firstDialogLook();

    /* ---- clicks and whether they did anything ---- */

    // What a click landed on is described as the control it is part of: a
    // label span inside a button or an icon inside a link is that button or
    // link, for every detector.
    const CONTROL = 'a[href], button, input, select, textarea, summary, label, [contenteditable="true"], ' +
      ['button', 'link', 'tab', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'checkbox', 'radio', 'option',
        'switch', 'treeitem'].map((r) => '[role="' + r + '"]').join(', ');

    // How far up from the clicked element the softer signs of clickability
    // are looked for: a card's title or picture sits a few levels inside it.
    const AFFORDANCE_DEPTH = 5;

    // A box that reads as one clickable thing: drawn apart from the page
    // (shadow, border, rounded filled background), card-sized (not a
    // section or the page), and either named like a card or one of a row of
    // like boxes with a heading or picture each (a grid of tiles). A single
    // bordered notice with a heading is text to read, not a card. Cards and
    // tiles invite a click whether or not the page made them controls.
    function cardLike(el) {
      const cs = getComputedStyle(el);
      if (!/^(block|flex|grid|inline-block|inline-flex|list-item)$/.test(cs.display)) return false;
      const r = el.getBoundingClientRect();
      const vw = window.innerWidth || 1, vh = window.innerHeight || 1;
      if (r.width < 100 || r.height < 40 || r.width > vw * 0.8 || r.height > vh * 0.7) return false;
      const filled = cs.backgroundColor && !/rgba\(0, 0, 0, 0\)|transparent/.test(cs.backgroundColor);
      const bordered = ['Top', 'Right', 'Bottom', 'Left'].filter((s) =>
        parseFloat(cs['border' + s + 'Width']) >= 1 && cs['border' + s + 'Style'] !== 'none').length >= 3;
      const drawn = (cs.boxShadow && cs.boxShadow !== 'none') || bordered || (filled && parseFloat(cs.borderRadius) >= 4);
      const named = /(^|[-_\s])(card|tile|teaser|plate|item|service)s?([-_\s]|$)/i.test(String(el.className || ''));
      const titled = !!el.querySelector('h1, h2, h3, h4, h5, h6, img, svg, picture, [role="heading"]');
      const parent = el.parentElement;
      const alike = parent ? [...parent.children].filter((c) => c.localName === el.localName &&
        String(c.className || '') === String(el.className || '')).length : 0;
      return !!drawn && (named || (titled && alike >= 2));
    }

    // Why the clicked element invites a click, when it is not a control:
    // the signs a participant reads (the pointer cursor, a card's shape) and
    // those the page gives away (a tab stop, an `onclick` attribute; handlers
    // a page script set as properties or listeners live in the page's world,
    // which this isolated world cannot see).
    function affordance(target) {
      const why = {};
      const cursor = getComputedStyle(target).cursor;
      if (cursor === 'pointer') why.cursor = 'pointer';
      let depth = 0;
      for (let cur = target; cur && cur.nodeType === 1 && depth < AFFORDANCE_DEPTH; cur = cur.parentElement, depth++) {
        if (cur === document.body || cur === document.documentElement) break;
        const ti = attr(cur, 'tabindex');
        if (ti !== null && Number(ti) >= 0) why.tabindex = true;
        if (attr(cur, 'onclick')) why.handler = true;
        if (!why.card && cardLike(cur)) why.card = cssPath(cur);
      }
      if (/^(img|svg|picture|canvas)$/.test(target.localName) || target.closest('svg')) why.picture = true;
      return Object.keys(why).length ? why : null;
    }

    let clickSeq = 0;
    on(document, 'click', (ev) => {
      const target = elementOf(ev.target);
      if (target) clicked(ev, target);
    });
    // The browser fires no click at all on a disabled form control, though
    // the participant pressed it (a disabled «Далее» is pressed a lot): a
    // press released on one is recorded as its click.
    on(document, 'pointerup', (ev) => {
      if (ev.button !== 0) return;
      const target = elementOf(ev.target);
      const el = target && target.closest(CONTROL);
      if (el && el.disabled === true) clicked(ev, target);
    });

    function clicked(ev, target) {
      const el = target.closest(CONTROL) || target;
      const t = evTime(ev), clickId = ++clickSeq, selector = cssPath(el);
      const link = el.closest('a[href]'), control = el.closest('button, input');
      const data = {
        selector, text: clickText(el), tag: el.tagName.toLowerCase(),
        x: num(ev.clientX), y: num(ev.clientY), page_x: num(ev.pageX), page_y: num(ev.pageY),
        button: num(ev.button), role: attr(el, 'role'),
        href: link ? (typeof link.href === 'string' ? link.href : attr(link, 'href')) : null,
        disabled: !!(el.disabled === true || (control && control.disabled === true) || el.closest('[aria-disabled="true"]')),
        click_id: clickId,
      };
      if (el !== target) {
        data.target_selector = cssPath(target);
        data.target_tag = target.tagName.toLowerCase();
      } else {
        const why = guard(() => affordance(target));
        if (why) data.affordance = why;
      }
      record('click', data, t);
      lastCommit = now();
      watchEffect(clickId, selector, t);
    }

    // A click after which nothing in the DOM or URL changes within a second is a
    // "dead click": the participant expected something that did not happen.
    function watchEffect(clickId, selector, t0) {
      const w = { href: location.href, urlChanged: false, count: 0, first: null, done: false };
      const seen = (n) => {
        if (n > 0 && w.first === null) w.first = Math.round(Math.max(0, now() - t0) * 10) / 10;
        w.count += n;
      };
      const mo = typeof MutationObserver === 'function' ? new MutationObserver((recs) => seen(recs.length)) : null;
      if (mo) mo.observe(document, { childList: true, subtree: true, attributes: true, characterData: true });
      w.finish = (extra) => {
        if (w.done) return;
        w.done = true;
        watchers.delete(w);
        clearTimeout(w.timer);
        if (mo) { seen(mo.takeRecords().length); mo.disconnect(); }
        record('click_effect', Object.assign({ click_id: clickId, selector, mutations: w.count,
          first_change_ms: w.first, url_changed: w.urlChanged || location.href !== w.href }, extra), t0);
      };
      w.timer = setTimeout(() => guard(() => w.finish({})), EFFECT_WINDOW_MS);
      watchers.add(w);
    }

    /* ---- fields: focus, typing, changes, validation, submit ---- */

    on(document, 'focusin', (ev) => {
      const el = elementOf(ev.target);
      if (!isField(el)) return;
      record('focus', { selector: cssPath(el), field: fieldName(el), type: fieldType(el), label: labelOf(el) }, evTime(ev));
    });

    // One input event per typing burst: t is when the burst began, edits how many input events it had.
    const bursts = new Map(); // element -> {t, last, edits, timer}
    on(document, 'input', (ev) => {
      const el = elementOf(ev.target);
      if (!isField(el) || el.localName === 'select' || /^(checkbox|radio|file)$/.test(el.type)) return;
      const t = evTime(ev);
      let b = bursts.get(el);
      if (!b) { b = { t, last: t, edits: 0, timer: 0 }; bursts.set(el, b); }
      b.edits++;
      b.last = t;
      clearTimeout(b.timer);
      b.timer = setTimeout(() => guard(() => flushInput(el)), INPUT_DEBOUNCE_MS);
    });

    function flushInput(el) {
      const b = bursts.get(el);
      if (!b) return;
      bursts.delete(el);
      edited.add(el);
      clearTimeout(b.timer);
      record('input', Object.assign(fieldInfo(el), { edits: b.edits, duration_ms: Math.round(b.last - b.t) }), b.t);
    }

    on(document, 'change', (ev) => {
      const el = elementOf(ev.target);
      if (!el || !/^(input|select|textarea)$/.test(el.localName)) return;
      flushInput(el); // the typing summary goes before the change it led to
      edited.add(el);
      const data = fieldInfo(el);
      if (el.localName === 'select') { // option labels are page text, not typed input
        data.option = clean(Array.from(el.selectedOptions || [], (o) => o.text).join(', '), 80);
      }
      if (el.type === 'checkbox' || el.type === 'radio') data.checked = !!el.checked;
      record('change', data, evTime(ev));
    });

    on(document, 'invalid', (ev) => {
      const el = elementOf(ev.target);
      if (!el) return;
      record('validation_error', { selector: cssPath(el), field: fieldName(el),
        message: clean(el.validationMessage, 200), kind: 'native' }, evTime(ev));
    });

    // A field already marked invalid that the page marks again is a new
    // error only when the participant changed it since its last error and
    // then left it (validation on blur) or committed (a click, a submit
    // within the last second): a page that re-sets aria-invalid="true" on
    // every keystroke while the field has focus (live validation) must not
    // count one error per keystroke.
    if (typeof MutationObserver === 'function') {
      new MutationObserver((recs) => guard(() => {
        for (const r of recs) {
          const el = r.target;
          if (el.nodeType !== 1 || attr(el, 'aria-invalid') !== 'true') continue;
          const again = r.oldValue === 'true';
          const left = document.activeElement !== el || now() - lastCommit <= COMMIT_WINDOW_MS;
          if (again && !(edited.has(el) && left)) continue;
          edited.delete(el);
          const ids = [attr(el, 'aria-describedby'), attr(el, 'aria-errormessage')].filter(Boolean).join(' ');
          record('validation_error', { selector: cssPath(el), field: fieldName(el),
            message: textOfIds(ids, 200), kind: 'aria' }, now());
        }
      })).observe(document, { attributes: true, attributeFilter: ['aria-invalid'], attributeOldValue: true, subtree: true });
    }

    // form.action / form.method can be shadowed by fields named "action" / "method".
    const formProp = (f, name) => (typeof f[name] === 'string' ? f[name] : attr(f, name));
    on(document, 'submit', (ev) => {
      const f = elementOf(ev.target);
      if (!f) return;
      lastCommit = now();
      record('submit', { selector: cssPath(f), action: formProp(f, 'action'), method: formProp(f, 'method') }, evTime(ev));
    });

    /* ---- scrolling, errors, visibility, unload ---- */

    let scrollLast = 0, scrollTimer = 0, scrollT = 0;
    on(window, 'scroll', (ev) => {
      if (ev.target !== document && ev.target !== window) return; // inner scroll boxes do not move the page
      scrollT = evTime(ev);
      if (scrollTimer) return;
      const wait = scrollLast + SCROLL_EVERY_MS - now();
      if (wait <= 0) sendScroll();
      else scrollTimer = setTimeout(() => guard(sendScroll), wait); // trailing send: the final position
    });
    function sendScroll() {
      scrollTimer = 0;
      scrollLast = now();
      const de = document.documentElement;
      record('scroll', { x: window.scrollX, y: window.scrollY, max_y: de ? de.scrollHeight - window.innerHeight : 0 }, scrollT);
    }

    on(window, 'error', (ev) => {
      const el = elementOf(ev.target); // resource errors target the failing element, script errors the window
      if (el) {
        const url = [el.currentSrc, el.src, el.href].find((v) => typeof v === 'string' && v) ||
          attr(el, 'src') || attr(el, 'href') || null;
        record('resource_error', { selector: cssPath(el), url }, evTime(ev));
        return;
      }
      const message = String(ev.message || (ev.error && ev.error.message) || 'error').slice(0, 1000);
      record('js_error', { message, source: ev.filename || null, line: ev.lineno || null, col: ev.colno || null }, evTime(ev));
    });
    on(window, 'unhandledrejection', (ev) => {
      const r = ev.reason;
      if (r && r.labProbe) return; // an emit() rejection its caller ignored: not the page's error
      const message = guard(() => String((r && r.message) || r)) || 'unprintable rejection reason';
      record('js_error', { message: message.slice(0, 1000), source: null, line: null, col: null,
        unhandled_rejection: true }, evTime(ev));
    });

    on(document, 'visibilitychange', (ev) => record('visibility', { state: document.visibilityState }, evTime(ev)));

    // Leaving the page: report what is still open while the socket may still carry it.
    on(window, 'pagehide', () => {
      for (const el of Array.from(bursts.keys())) flushInput(el);
      for (const w of Array.from(watchers)) w.finish({ page_unloaded: true });
    });

    /* ---- start ---- */

    nav('load');
    setInterval(() => guard(() => { if (connReady && ws && ws.readyState === 1) startBurst(LATER_BURST); }), BURST_EVERY_MS);
    connect();
  }
})();
