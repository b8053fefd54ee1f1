/*
 * Findings overlay for prototype teams (served by lab-web at /overlay.js).
 *
 *   <script src="https://lab.example/overlay.js" data-token="TOKEN"></script>
 *   <script src="/overlay.js" data-lab-url="https://lab.example" data-token="TOKEN"></script>
 *   or, from a bookmarklet: window.LAB_OVERLAY = {url, token}; then load this script.
 *
 * Fetches GET {url}/api/v1/overlay/findings?url=<location.href> with the API
 * token, pins a numbered badge (coloured by severity) next to each element
 * matched by a finding's selector, and lists this screen's findings in a
 * small panel (including those whose element is not on the page). Everything
 * lives in a shadow root, so the prototype's CSS cannot reach it and ours
 * cannot leak out; finding text goes in through textContent only.
 */
(function () {
  'use strict';
  if (window.__labOverlay) { window.__labOverlay.refresh(); return; }

  var script = document.currentScript ||
    document.querySelector('script[src*="overlay.js"][data-token]') ||
    document.querySelector('script[src*="overlay.js"]');
  var conf = window.LAB_OVERLAY || {};
  var token = conf.token || (script && script.getAttribute('data-token')) || '';
  var labUrl = conf.url || (script && script.getAttribute('data-lab-url')) || '';
  if (!labUrl && script && script.src) { try { labUrl = new URL(script.src, location.href).origin; } catch (e) { labUrl = ''; } }
  labUrl = String(labUrl || location.origin).replace(/\/+$/, '');

  var L = {
    title: 'Находки', loading: 'Загрузка…', none: 'Для этого экрана находок нет',
    notFound: 'элемент не найден на странице', badToken: 'Токен не подошёл: попросите новый у администратора лаборатории',
    failed: 'Не удалось загрузить находки', noToken: 'Не задан токен (data-token)', clip: 'Смотреть клип',
    session: 'Сессия', step: 'Шаг', severity: 'Серьёзность', emotion: 'Эмоция', participant: 'Участник',
    close: 'Закрыть', collapse: 'Свернуть', expand: 'Развернуть', hide: 'Скрыть находки', show: 'Показать находки',
    sev: {1: 'косметическая', 2: 'незначительная', 3: 'серьёзная', 4: 'критическая'},
    emo: {positive: 'позитивная', neutral: 'нейтральная', negative: 'негативная'},
    cat: {navigation: 'Навигация', comprehension: 'Понимание', form_input: 'Ввод данных', error: 'Ошибка',
      content: 'Контент', trust: 'Доверие', performance: 'Скорость', accessibility: 'Доступность', other: 'Другое'},
  };
  var SEV_COLOR = {1: '#4dabf7', 2: '#f59f00', 3: '#f76707', 4: '#e03131'};

  // ---------- shadow root ----------
  var host = document.createElement('div');
  host.id = 'lab-findings-overlay';
  host.setAttribute('data-lab-overlay', '');
  // Outside <body>, so observing the page's body never sees our own changes.
  host.style.cssText = 'position:fixed;left:0;top:0;width:0;height:0;z-index:2147483647;';
  var root = host.attachShadow ? host.attachShadow({mode: 'open'}) : host;
  var style = document.createElement('style');
  style.textContent = [
    ':host{all:initial}',
    '*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}',
    '.badge{position:fixed;min-width:22px;height:22px;padding:0 6px;border-radius:11px;border:2px solid #fff;color:#fff;',
    ' font:700 12px/18px system-ui,sans-serif;text-align:center;cursor:pointer;box-shadow:0 1px 4px rgba(0,0,0,.35);pointer-events:auto}',
    '.badge:focus{outline:2px solid #1c7ed6;outline-offset:1px}',
    '.outline{position:fixed;border:2px dashed;border-radius:3px;pointer-events:none}',
    '.pop{position:fixed;width:300px;max-width:calc(100vw - 16px);background:#fff;color:#212529;border:1px solid #ced4da;border-radius:6px;',
    ' box-shadow:0 6px 24px rgba(0,0,0,.2);padding:10px 12px;font-size:13px;line-height:1.4;pointer-events:auto}',
    '.pop h3{margin:0 24px 4px 0;font-size:14px}.pop .meta{color:#495057;font-size:12px;margin:2px 0}',
    '.pop blockquote{margin:6px 0;padding:4px 8px;border-left:3px solid #adb5bd;background:#f8f9fa;font-style:italic}',
    '.pop a{color:#1864ab}.x{position:absolute;right:6px;top:4px;border:0;background:none;font-size:18px;cursor:pointer;color:#495057}',
    '.panel{position:fixed;right:12px;bottom:12px;width:320px;max-height:50vh;display:flex;flex-direction:column;background:#fff;color:#212529;',
    ' border:1px solid #ced4da;border-radius:8px;box-shadow:0 6px 24px rgba(0,0,0,.2);font-size:13px;pointer-events:auto}',
    '.panel.collapsed{width:auto}.panel.collapsed .body{display:none}',
    '.head{display:flex;align-items:center;gap:6px;padding:6px 8px;background:#1f2a44;color:#fff;border-radius:7px 7px 0 0}',
    '.panel.collapsed .head{border-radius:7px}',
    '.head strong{flex:1;font-size:13px;white-space:nowrap}.head button{border:0;background:rgba(255,255,255,.15);color:#fff;border-radius:4px;cursor:pointer;padding:2px 7px;font-size:12px}',
    '.body{overflow:auto;padding:4px 0}.msg{padding:8px 10px;color:#495057}',
    '.item{display:flex;gap:8px;padding:6px 10px;cursor:pointer;border-bottom:1px solid #f1f3f5;align-items:flex-start}',
    '.item:hover,.item:focus{background:#f1f3f5;outline:none}.num{flex:none;min-width:20px;height:20px;border-radius:10px;color:#fff;font-weight:700;font-size:11px;line-height:20px;text-align:center}',
    '.item .txt{flex:1;min-width:0}.item .cat{font-weight:600}.item .q{color:#495057;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}',
    '.missing{color:#c92a2a;font-size:11px}',
    '.hidden-badges .badge,.hidden-badges .outline{display:none}',
  ].join('\n');
  root.appendChild(style);
  var layer = document.createElement('div');
  root.appendChild(layer);

  function h(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }
  function safeHref(u) {
    try {
      var p = new URL(String(u), labUrl + '/');
      return (p.protocol === 'https:' || p.protocol === 'http:') ? p.href : null;
    } catch (e) { return null; }
  }

  // ---------- state ----------
  var findings = [];
  var pins = [];          // {finding, n, el, badge, outline}
  var status = 'loading'; // loading | ok | error
  var errorText = '';
  var openPop = null;
  var collapsed = sessionStorage.getItem('labOverlayCollapsed') === '1';
  var badgesHidden = false;
  var lastHref = location.href;

  // ---------- panel ----------
  var panel = h('div', 'panel');
  var head = h('div', 'head');
  var title = h('strong', null, L.title);
  var toggleBadges = h('button', null, L.hide);
  var collapseBtn = h('button', null, collapsed ? L.expand : L.collapse);
  var body = h('div', 'body');
  head.appendChild(title); head.appendChild(toggleBadges); head.appendChild(collapseBtn);
  panel.appendChild(head); panel.appendChild(body);
  layer.appendChild(panel);
  if (collapsed) panel.classList.add('collapsed');
  collapseBtn.addEventListener('click', function () {
    collapsed = !collapsed;
    panel.classList.toggle('collapsed', collapsed);
    collapseBtn.textContent = collapsed ? L.expand : L.collapse;
    sessionStorage.setItem('labOverlayCollapsed', collapsed ? '1' : '0');
  });
  toggleBadges.addEventListener('click', function () {
    badgesHidden = !badgesHidden;
    layer.classList.toggle('hidden-badges', badgesHidden);
    toggleBadges.textContent = badgesHidden ? L.show : L.hide;
    closePop();
  });

  function renderPanel() {
    title.textContent = L.title + (status === 'ok' ? ' (' + findings.length + ')' : '');
    while (body.firstChild) body.removeChild(body.firstChild);
    if (status === 'loading') { body.appendChild(h('div', 'msg', L.loading)); return; }
    if (status === 'error') { body.appendChild(h('div', 'msg', errorText)); return; }
    if (!findings.length) { body.appendChild(h('div', 'msg', L.none)); return; }
    pins.forEach(function (p) {
      var f = p.finding;
      var item = h('div', 'item'); item.tabIndex = 0;
      var num = h('span', 'num', p.n); num.style.background = SEV_COLOR[f.severity] || '#868e96';
      var txt = h('div', 'txt');
      txt.appendChild(h('div', 'cat', (L.cat[f.category] || f.category || '') + ' · ' + (L.sev[f.severity] || f.severity || '')));
      if (f.quote) txt.appendChild(h('div', 'q', '«' + f.quote + '»'));
      if (!p.el) txt.appendChild(h('div', 'missing', L.notFound));
      item.appendChild(num); item.appendChild(txt);
      var open = function () {
        if (p.el) {
          p.el.scrollIntoView({block: 'center', behavior: 'smooth'});
          setTimeout(function () { showPop(p); }, 350);
        } else showPop(p);
      };
      item.addEventListener('click', open);
      item.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } });
      body.appendChild(item);
    });
  }

  // ---------- pins ----------
  function find(selector) {
    if (!selector) return null;
    try { return document.querySelector(selector); } catch (e) { return null; }
  }

  function scan() {
    var changed = false;
    pins.forEach(function (p) {
      var el = find(p.finding.selector);
      if (el && !document.documentElement.contains(el)) el = null;
      if (el !== p.el) { p.el = el; changed = true; }
    });
    if (changed) renderPanel();
    place();
  }

  function buildPins() {
    pins.forEach(function (p) { if (p.badge) p.badge.remove(); if (p.outline) p.outline.remove(); });
    closePop();
    pins = findings.map(function (f, i) {
      var color = SEV_COLOR[f.severity] || '#868e96';
      var badge = h('button', 'badge', i + 1);
      badge.type = 'button';
      badge.style.background = color;
      badge.setAttribute('aria-label', (L.cat[f.category] || f.category || '') + ', ' + (L.sev[f.severity] || ''));
      var outline = h('div', 'outline'); outline.style.borderColor = color;
      var p = {finding: f, n: i + 1, el: null, badge: badge, outline: outline};
      badge.addEventListener('click', function (e) { e.stopPropagation(); if (openPop && openPop.pin === p) closePop(); else showPop(p); });
      layer.insertBefore(outline, panel); layer.insertBefore(badge, panel);
      return p;
    });
    scan();
    renderPanel();
  }

  var placeQueued = false;
  function queuePlace() { if (!placeQueued) { placeQueued = true; requestAnimationFrame(function () { placeQueued = false; place(); }); } }

  function place() {
    var slots = {}; // several findings on one element sit side by side
    pins.forEach(function (p) {
      if (!p.el) { p.badge.style.display = 'none'; p.outline.style.display = 'none'; return; }
      var r = p.el.getBoundingClientRect();
      var visible = r.width || r.height;
      var offscreen = r.bottom < 0 || r.top > innerHeight || r.right < 0 || r.left > innerWidth;
      if (!visible || offscreen) { p.badge.style.display = 'none'; p.outline.style.display = 'none'; return; }
      var key = Math.round(r.left) + ':' + Math.round(r.top);
      var k = slots[key] = (slots[key] || 0) + 1;
      var x = Math.min(innerWidth - 26, Math.max(2, r.right - 10 + (k - 1) * 24));
      var y = Math.min(innerHeight - 24, Math.max(2, r.top - 10));
      p.badge.style.display = ''; p.badge.style.left = x + 'px'; p.badge.style.top = y + 'px';
      p.outline.style.display = (openPop && openPop.pin === p) ? '' : 'none';
      p.outline.style.left = (r.left - 3) + 'px'; p.outline.style.top = (r.top - 3) + 'px';
      p.outline.style.width = (r.width + 6) + 'px'; p.outline.style.height = (r.height + 6) + 'px';
    });
    if (openPop) positionPop(openPop);
  }

  // ---------- popover ----------
  function showPop(p) {
    closePop();
    var f = p.finding;
    var pop = h('div', 'pop');
    pop.setAttribute('role', 'dialog');
    var x = h('button', 'x', '×'); x.type = 'button'; x.setAttribute('aria-label', L.close);
    x.addEventListener('click', closePop);
    pop.appendChild(x);
    pop.appendChild(h('h3', null, p.n + '. ' + (L.cat[f.category] || f.category || '')));
    pop.appendChild(h('div', 'meta', L.severity + ': ' + f.severity + ' — ' + (L.sev[f.severity] || '')));
    if (f.emotion) pop.appendChild(h('div', 'meta', L.emotion + ': ' + (L.emo[f.emotion] || f.emotion)));
    if (f.step) pop.appendChild(h('div', 'meta', L.step + ': ' + (f.step_title || f.step)));
    if (f.participant) pop.appendChild(h('div', 'meta', L.participant + ': ' + f.participant));
    if (f.quote) pop.appendChild(h('blockquote', null, '«' + f.quote + '»'));
    if (f.note) pop.appendChild(h('div', null, f.note));
    if (!p.el) pop.appendChild(h('div', 'missing', L.notFound + (f.selector ? ': ' + f.selector : '')));
    var links = h('div', 'meta');
    var clip = f.clip_url && safeHref(f.clip_url);
    if (clip) { var a = h('a', null, '▶ ' + L.clip); a.href = clip; a.target = '_blank'; a.rel = 'noopener'; links.appendChild(a); }
    if (f.session_id !== undefined && f.session_id !== null) {
      var s = h('a', null, L.session); s.href = labUrl + '/sessions/' + encodeURIComponent(f.session_id); s.target = '_blank'; s.rel = 'noopener';
      if (clip) links.appendChild(document.createTextNode(' · '));
      links.appendChild(s);
    }
    pop.appendChild(links);
    layer.appendChild(pop);
    openPop = {pin: p, el: pop};
    place();
  }
  function positionPop(o) {
    var p = o.pin, pop = o.el;
    var w = pop.offsetWidth, hgt = pop.offsetHeight;
    var x, y;
    if (p.el && p.badge.style.display !== 'none') {
      var br = p.badge.getBoundingClientRect();
      x = br.left; y = br.bottom + 6;
      if (y + hgt > innerHeight - 8) y = Math.max(8, br.top - hgt - 6);
    } else {
      var pr = panel.getBoundingClientRect();
      x = pr.left - w - 8; y = Math.max(8, pr.bottom - hgt);
    }
    pop.style.left = Math.max(8, Math.min(innerWidth - w - 8, x)) + 'px';
    pop.style.top = Math.max(8, y) + 'px';
  }
  function closePop() {
    if (!openPop) return;
    openPop.el.remove();
    openPop.pin.outline.style.display = 'none';
    openPop = null;
  }
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') closePop(); });
  document.addEventListener('click', function (e) { if (openPop && !e.composedPath().includes(host)) closePop(); }, true);

  // ---------- data ----------
  var loadSeq = 0;
  function load() {
    var seq = ++loadSeq;
    if (!token) { status = 'error'; errorText = L.noToken; findings = []; buildPins(); return; }
    status = 'loading'; renderPanel();
    fetch(labUrl + '/api/v1/overlay/findings?url=' + encodeURIComponent(location.href), {
      headers: {'Authorization': 'Bearer ' + token, 'Accept': 'application/json'},
      credentials: 'omit', mode: 'cors',
    }).then(function (r) {
      if (r.status === 401 || r.status === 403) throw new Error(L.badToken);
      if (!r.ok) throw new Error(L.failed + ' (HTTP ' + r.status + ')');
      return r.json();
    }).then(function (data) {
      if (seq !== loadSeq) return;
      findings = (data && Array.isArray(data.findings)) ? data.findings : [];
      findings.sort(function (a, b) { return (b.severity || 0) - (a.severity || 0) || (a.start_ms || 0) - (b.start_ms || 0); });
      status = 'ok';
      buildPins();
    }).catch(function (e) {
      if (seq !== loadSeq) return;
      status = 'error'; errorText = e && e.message ? e.message : L.failed;
      findings = []; buildPins();
    });
  }

  // ---------- page changes ----------
  function onUrlMaybeChanged() {
    if (location.href === lastHref) return;
    lastHref = location.href;
    load();
  }
  ['pushState', 'replaceState'].forEach(function (m) {
    var orig = history[m];
    if (typeof orig !== 'function') return;
    history[m] = function () { var r = orig.apply(this, arguments); setTimeout(onUrlMaybeChanged, 0); return r; };
  });
  window.addEventListener('popstate', onUrlMaybeChanged);
  window.addEventListener('hashchange', onUrlMaybeChanged);
  setInterval(onUrlMaybeChanged, 1000); // frameworks that keep their own reference to history

  var scanTimer = null;
  var mo = new MutationObserver(function () {
    if (scanTimer) return;
    scanTimer = setTimeout(function () { scanTimer = null; scan(); }, 200);
  });
  window.addEventListener('scroll', queuePlace, {capture: true, passive: true});
  window.addEventListener('resize', queuePlace, {passive: true});

  function start() {
    (document.body || document.documentElement).appendChild(host);
    if (host.parentNode === document.body) {
      // Keep it out of the observed subtree where possible.
      document.documentElement.appendChild(host);
    }
    mo.observe(document.body || document.documentElement, {childList: true, subtree: true, attributes: true, attributeFilter: ['class', 'id', 'style', 'hidden']});
    load();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();

  window.__labOverlay = {refresh: load, findings: function () { return findings.slice(); }};
})();
