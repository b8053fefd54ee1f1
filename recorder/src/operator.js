// Operator console script, served at /operator.js (the page's CSP allows only
// scripts from the endpoint itself, no inline ones).
(function () {
  'use strict';
  const TEXT = {
    ru: { title: 'Запись сессии', session: 'Сессия', elapsed: 'Время сессии', events: 'События', clients: 'Вкладки',
      state: 'Состояние', task: 'Задание', taskStart: 'Начало задания', taskEnd: 'Конец задания', stepLabel: 'Шаг',
      step: 'Шаг', noteLabel: 'Заметка', note: 'Заметка', help: 'Попросил помощи', stop: 'Остановить запись',
      recent: 'Последние метки', colTime: 'Время', colMarker: 'Метка', colResult: 'Ответ', accepted: 'принято',
      rejected: 'отклонено', recording: 'идёт запись', stopping: 'остановка…', offline: 'нет связи с рекордером',
      confirmStop: 'Остановить запись сессии?', sending: 'отправка…', lang: 'EN',
      none: 'нет', ms: 'мс' },
    en: { title: 'Session recording', session: 'Session', elapsed: 'Session time', events: 'Events', clients: 'Tabs',
      state: 'State', task: 'Task', taskStart: 'Task start', taskEnd: 'Task end', stepLabel: 'Step',
      step: 'Step', noteLabel: 'Note', note: 'Note', help: 'Asked for help', stop: 'Stop recording',
      recent: 'Recent markers', colTime: 'Time', colMarker: 'Marker', colResult: 'Response', accepted: 'accepted',
      rejected: 'rejected', recording: 'recording', stopping: 'stopping…', offline: 'recorder unreachable',
      confirmStop: 'Stop recording this session?', sending: 'sending…', lang: 'RU',
      none: 'none', ms: 'ms' },
  };
  const $ = (id) => document.getElementById(id);
  let lang = 'ru';
  try { if (localStorage.getItem('labOperatorLang') === 'en') lang = 'en'; } catch (_) { /* storage may be blocked */ }
  const t = (key) => TEXT[lang][key] || key;
  // Label key of each request kind shown in the recent list.
  const KIND_KEY = { task_start: 'taskStart', task_end: 'taskEnd', step: 'step', help: 'help', note: 'note', stop: 'stop' };
  const recent = []; // newest first: {type, text, t_ns, result, error}
  let lastStatus = null, offline = false;

  function applyLang() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    $('lang').textContent = t('lang');
    renderStatus();
    renderLog();
  }

  function fmtTime(ns) {
    if (typeof ns !== 'number' || !isFinite(ns)) return '—';
    const ms = Math.max(0, Math.floor(ns / 1e6));
    const pad = (n, w) => String(n).padStart(w, '0');
    return Math.floor(ms / 3600000) + ':' + pad(Math.floor(ms / 60000) % 60, 2) + ':' +
      pad(Math.floor(ms / 1000) % 60, 2) + '.' + pad(ms % 1000, 3);
  }

  function renderStatus() {
    const s = lastStatus;
    $('session').textContent = s ? String(s.session_id) : '—';
    $('elapsed').textContent = s ? fmtTime(s.t_ns) : '—';
    $('events').textContent = s && s.events
      ? s.events.accepted + ' ' + t('accepted') + ', ' + s.events.rejected + ' ' + t('rejected') : '—';
    const clients = s && Array.isArray(s.clients) ? s.clients : [];
    $('clients').textContent = clients.length
      ? clients.length + ': ' + clients.map((c) => c.client + (typeof c.uncertainty_ns === 'number'
        ? ' ±' + (c.uncertainty_ns / 1e6).toFixed(1) + ' ' + t('ms') : '')).join(', ')
      : t('none');
    const state = $('state');
    state.textContent = offline ? t('offline') : s ? (s.stopping ? t('stopping') : t('recording')) : '—';
    state.className = offline || (s && s.stopping) ? 'bad' : '';
  }

  async function poll() {
    try {
      const r = await fetch('/api/status', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      lastStatus = await r.json();
      offline = false;
    } catch (_) {
      offline = true;
    }
    renderStatus();
    setTimeout(poll, 1000); // after completion, so a slow recorder never gets overlapping requests
  }

  function renderLog() {
    const body = $('log');
    body.textContent = '';
    for (const m of recent) {
      const tr = document.createElement('tr');
      const cells = [
        m.t_ns == null ? '—' : fmtTime(m.t_ns),
        t(KIND_KEY[m.type] || m.type),
        m.error ? m.error : m.result == null ? t('sending') : m.result,
      ];
      if (m.text) cells[1] += ': ' + m.text;
      cells.forEach((text, i) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (i === 0) td.className = 't';
        if (i === 2 && m.error) td.className = 'bad';
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
  }

  // Sends one request and records it in the recent list with the server's answer.
  async function send(url, body, entry) {
    recent.unshift(entry);
    recent.length = Math.min(recent.length, 10);
    renderLog();
    try {
      const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body) });
      const raw = await r.text();
      let data = null;
      try { data = JSON.parse(raw); } catch (_) { /* not JSON: show the raw text */ }
      if (!r.ok) entry.error = 'HTTP ' + r.status + (data && data.error ? ': ' + data.error : raw ? ': ' + raw : '');
      else {
        if (data && typeof data.t_ns === 'number') entry.t_ns = data.t_ns;
        entry.result = data && data.seq != null ? '#' + data.seq : raw || String(r.status);
      }
    } catch (e) {
      entry.error = t('offline') + ' (' + e.message + ')';
    }
    renderLog();
  }

  function marker(type) {
    const body = { type };
    let text = '';
    if (type === 'task_start' || type === 'task_end') body.label = text = $('task').value.trim() || 'Задание 1';
    if (type === 'step') body.label = text = $('step').value.trim();
    if (type === 'note') {
      body.text = text = $('note').value.trim();
      if (!text) { $('note').focus(); return; }
      $('note').value = '';
    }
    send('/api/markers', body, { type, text, t_ns: null, result: null, error: null });
  }

  function stopRecording() {
    if (!confirm(t('confirmStop'))) return;
    send('/api/stop', {}, { type: 'stop', text: '', t_ns: null, result: null, error: null });
  }

  $('btn-start').onclick = () => marker('task_start');
  $('btn-end').onclick = () => marker('task_end');
  $('btn-step').onclick = () => marker('step');
  $('btn-help').onclick = () => marker('help');
  $('btn-note').onclick = () => marker('note');
  $('stop').onclick = stopRecording;
  $('lang').onclick = () => {
    lang = lang === 'ru' ? 'en' : 'ru';
    try { localStorage.setItem('labOperatorLang', lang); } catch (_) { /* keep it for this page only */ }
    applyLang();
  };
  $('note').addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) marker('note'); });

  // Shortcuts use ev.code (physical key), so they work with a Russian layout too,
  // and never fire while the operator is typing in a field.
  document.addEventListener('keydown', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const tag = ev.target && ev.target.tagName;
    if (tag === 'INPUT' || tag === 'TEXTAREA' || (ev.target && ev.target.isContentEditable)) return;
    const action = { KeyS: () => marker('task_start'), KeyE: () => marker('task_end'),
      KeyH: () => marker('help'), KeyN: () => $('note').focus() }[ev.code];
    if (action) { ev.preventDefault(); action(); }
  });

  applyLang();
  poll();
})();
