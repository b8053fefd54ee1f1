// The station console's page: polls /api/state once a second and renders it;
// every change goes through the console's JSON API (same origin only).
'use strict';

const T = {
  ru: {
    title: 'Пульт станции', new_session: 'Новая сессия', participant: 'Код участника', consent_text: 'Текст согласия',
    consent_ref: 'Номер согласия', consent_ok: 'Участник прочитал и подписал согласие на запись', moderator: 'Модератор (код)',
    start: 'Начать запись', recording: 'Идёт запись', stop: 'Остановить запись', events: 'События', rejected: 'отклонено',
    disk: 'свободно', tasks: 'Задания', task: 'Задание', elapsed: 'Время', expected: 'Норма', mark_step: 'Шаг',
    mark_help: 'Попросил помощи', mark_note: 'Заметка', note_placeholder: 'Заметка', show_participant: 'Показать участнику вопросы',
    ask_sus: 'Итоговая анкета (SUS)', uploads: 'Выгрузка на сервер', task_start: 'Начать', task_end: 'Завершить',
    pattern: 'вид: {p} (# — цифра, A — латинская буква)', pending: 'Ждут ответа участника: {n}', stop_confirm: 'Остановить запись?',
    offline: 'Сервер лаборатории не задан: записи остаются на станции.', server: 'Сервер: {s}', no_uploads: 'Очереди нет',
    retry: 'Повторить', lost: 'Потеряно устройство: {t}', hours: '{h} ч записи', recorder_gone: 'Процесс записи не отвечает',
    state_queued: 'в очереди', state_hashing: 'подсчёт контрольных сумм', state_uploading: 'выгрузка', state_acknowledged: 'принято сервером',
    state_refused: 'не принято', stopping: 'Останавливаю…',
    preflight: 'Проверка перед сессией', preflight_start: 'Запустить проверку', preflight_stop: 'Остановить проверку',
    sync_test: 'Проверить синхронизацию (5 с)', sync_running: 'Идёт проверка синхронизации…', channel: 'канал',
    disk_line: 'Свободно {f}, хватит примерно на {h} ч записи', sync_ok: 'Синхронизация в норме', sync_bad: 'Синхронизация: есть замечания',
    event_frame: 'событие → кадр, медиана {m} мс', event_audio: 'событие → звук, медиана {m} мс', av_offset: 'смещение звука и видео {m} мс',
    no_picture: 'нет изображения', role_participant: 'участник', role_moderator: 'модератор', role_mixed: 'общий',
  },
  en: {
    title: 'Station console', new_session: 'New session', participant: 'Participant code', consent_text: 'Consent text',
    consent_ref: 'Consent reference', consent_ok: 'The participant read and signed the consent to be recorded', moderator: 'Moderator (code)',
    start: 'Start recording', recording: 'Recording', stop: 'Stop recording', events: 'Events', rejected: 'rejected',
    disk: 'free', tasks: 'Tasks', task: 'Task', elapsed: 'Time', expected: 'Expected', mark_step: 'Step',
    mark_help: 'Asked for help', mark_note: 'Note', note_placeholder: 'Note', show_participant: 'Show the questions to the participant',
    ask_sus: 'Final questionnaire (SUS)', uploads: 'Upload to the lab server', task_start: 'Start', task_end: 'End',
    pattern: 'form: {p} (# a digit, A a Latin capital)', pending: 'Waiting for the participant: {n}', stop_confirm: 'Stop the recording?',
    offline: 'No lab server set: recordings stay on the station.', server: 'Server: {s}', no_uploads: 'Nothing queued',
    retry: 'Retry', lost: 'Device lost: {t}', hours: '{h} h of recording', recorder_gone: 'The recording process does not answer',
    state_queued: 'queued', state_hashing: 'computing checksums', state_uploading: 'uploading', state_acknowledged: 'accepted by the server',
    state_refused: 'not accepted', stopping: 'Stopping…',
    preflight: 'Pre-flight check', preflight_start: 'Start the check', preflight_stop: 'Stop the check',
    sync_test: 'Check sync (5 s)', sync_running: 'Checking sync…', channel: 'channel',
    disk_line: '{f} free, about {h} h of recording', sync_ok: 'Sync is fine', sync_bad: 'Sync: see the problems',
    event_frame: 'event → frame, median {m} ms', event_audio: 'event → audio, median {m} ms', av_offset: 'audio/video offset {m} ms',
    no_picture: 'no picture', role_participant: 'participant', role_moderator: 'moderator', role_mixed: 'mixed',
  },
};
let lang = localStorage.getItem('lab_console_lang') === 'en' ? 'en' : 'ru';
const t = (k, v = {}) => (T[lang][k] || k).replace(/\{(\w+)\}/g, (_, n) => String(v[n] ?? ''));
const $ = (id) => document.getElementById(id);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') e.addEventListener('click', v); else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
const fmtS = (s) => { s = Math.max(0, Math.floor(s)); const m = Math.floor(s / 60); const h = Math.floor(m / 60);
  return h ? `${h}:${String(m % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}` : `${m}:${String(s % 60).padStart(2, '0')}`; };
const fmtBytes = (b) => b >= 1 << 30 ? (b / (1 << 30)).toFixed(1) + ' GiB' : (b / (1 << 20)).toFixed(0) + ' MiB';

function applyLang() {
  document.documentElement.lang = lang;
  for (const n of document.querySelectorAll('[data-t]')) n.textContent = t(n.dataset.t);
  for (const n of document.querySelectorAll('[data-tp]')) n.placeholder = t(n.dataset.tp);
  $('lang').textContent = lang === 'ru' ? 'English' : 'Русский';
  document.title = t('title');
}

async function call(method, path, body) {
  const r = await fetch(path, {method, headers: body ? {'Content-Type': 'application/json'} : {}, body: body ? JSON.stringify(body) : undefined});
  const text = await r.text();
  let v = null; try { v = text ? JSON.parse(text) : null; } catch (_) { v = {error: text}; }
  if (!r.ok) throw new Error((v && v.error) || r.statusText);
  return v;
}

let state = null;

function render(s) {
  state = s;
  const st = s.study || {};
  $('study').textContent = `${st.title || ''} · ${s.journey_title || st.life_situation || ''}`;
  $('consent-text').textContent = st.consent_text || '';
  $('pattern-hint').textContent = t('pattern', {p: st.participant_pattern || ''});
  const live = s.session;
  $('new-session').hidden = !!live;
  $('preflight').hidden = !!live;
  if (live && preflightTimer) { clearInterval(preflightTimer); preflightTimer = null; }
  $('running').hidden = !live;
  const warns = [];
  if (s.disk && s.disk.warning_ru) warns.push(lang === 'ru' ? s.disk.warning_ru : s.disk.warning_en);
  if (live) {
    const rec = live.record;
    const status = live.status || {};
    $('run-participant').textContent = rec.participant;
    $('run-bundle').textContent = rec.session_id;
    const nowNs = status.t_ns ?? 0;
    $('elapsed').textContent = fmtS(nowNs / 1e9);
    $('events-accepted').textContent = String((status.events || {}).accepted ?? '—');
    $('events-rejected').textContent = String((status.events || {}).rejected ?? '—');
    $('disk-free').textContent = live.disk ? `${fmtBytes(live.disk.free_bytes)} (${t('hours', {h: (live.disk.hours_left || 0).toFixed(1)})})` : '—';
    if (!live.alive || !live.status) warns.push(t('recorder_gone'));
    for (const w of status.warnings || []) warns.push(t('lost', {t: (w.data && w.data.track) || w.kind}));
    renderTasks(st.tasks || [], rec.tasks || [], nowNs);
    $('pending').textContent = (rec.pending || []).length ? t('pending', {n: rec.pending.length}) : '';
    $('show-participant').disabled = !(rec.pending || []).length;
  }
  const wbox = $('warnings');
  wbox.hidden = !warns.length;
  wbox.replaceChildren(...warns.map((w) => el('div', {class: 'warning', role: 'alert'}, w)));
  $('server').textContent = s.online ? t('server', {s: s.server}) : t('offline');
  const ups = s.uploads || [];
  $('uploads').tBodies[0].replaceChildren(...(ups.length ? ups.map((u) => el('tr', {'data-bundle': u.bundle, 'data-state': u.state},
    el('td', null, u.bundle), el('td', null, t('state_' + u.state)),
    el('td', null, el('div', {class: 'bar'}, el('div', {style: `width:${u.bytes_total ? Math.round(u.bytes_done / u.bytes_total * 100) : 0}%`}))),
    el('td', {class: 'num small'}, u.bytes_total ? `${fmtBytes(u.bytes_done)} / ${fmtBytes(u.bytes_total)}` : ''),
    el('td', {class: 'small error'}, u.error || ''),
    el('td', null, u.state === 'refused' ? el('button', {type: 'button', onclick: () => call('POST', `/api/uploads/${encodeURIComponent(u.bundle)}/retry`).catch(showRunError)}, t('retry')) : null)))
    : [el('tr', null, el('td', {class: 'muted'}, t('no_uploads')))]));
}

// Rows are built once per task and then only updated, so a button is never
// replaced under the operator's pointer.
function renderTasks(tasks, runs, nowNs) {
  const body = $('tasks').tBodies[0];
  if (body.rows.length !== tasks.length) {
    body.replaceChildren(...tasks.map((task) => el('tr', {'data-task': task.id},
      el('td', null, el('strong', null, task.title), el('div', {class: 'muted small'}, task.instruction)),
      el('td', {class: 'num elapsed'}, '—'),
      el('td', {class: 'num'}, task.expected_s ? fmtS(task.expected_s) : '—'),
      el('td', {class: 'num'},
        el('button', {type: 'button', 'data-edge': 'start', onclick: () => taskEdge(task.id, 'start')}, t('task_start')), ' ',
        el('button', {type: 'button', 'data-edge': 'end', onclick: () => taskEdge(task.id, 'end')}, t('task_end'))))));
  }
  tasks.forEach((task, i) => {
    const row = body.rows[i];
    const run = runs.find((r) => r.id === task.id) || {};
    const started = run.start_ns != null;
    const ended = run.end_ns != null;
    const secs = started ? ((ended ? run.end_ns : nowNs) - run.start_ns) / 1e9 : 0;
    row.dataset.state = ended ? 'ended' : started ? 'running' : 'todo';
    const cell = row.querySelector('.elapsed');
    cell.textContent = started ? fmtS(secs) : '—';
    cell.classList.toggle('over', !!(task.expected_s && secs > task.expected_s));
    row.querySelector('[data-edge="start"]').disabled = started && !ended;
    row.querySelector('[data-edge="end"]').disabled = !started || ended;
    row.querySelector('[data-edge="start"]').textContent = t('task_start');
    row.querySelector('[data-edge="end"]').textContent = t('task_end');
  });
}

function showRunError(e) { $('run-error').textContent = e.message; }

async function taskEdge(id, edge) {
  try { await call('POST', `/api/tasks/${encodeURIComponent(id)}/${edge}`); $('run-error').textContent = ''; refresh(); } catch (e) { showRunError(e); }
}

async function refresh() {
  try { render(await call('GET', '/api/state')); } catch (e) { showRunError(e); }
}

$('lang').addEventListener('click', () => { lang = lang === 'ru' ? 'en' : 'ru'; localStorage.setItem('lab_console_lang', lang); applyLang(); if (state) render(state); });
$('start').addEventListener('click', async () => {
  $('start-error').textContent = '';
  $('start').disabled = true;
  try {
    await call('POST', '/api/session', {participant: $('participant').value.trim(), consent_ref: $('consent-ref').value.trim(),
      consent_confirmed: $('consent-ok').checked, moderator: $('moderator').value.trim()});
    $('participant').value = ''; $('consent-ref').value = ''; $('consent-ok').checked = false;
    await refresh();
  } catch (e) { $('start-error').textContent = e.message; } finally { $('start').disabled = false; }
});
$('stop').addEventListener('click', async () => {
  if (!confirm(t('stop_confirm'))) return;
  $('stop').disabled = true; $('run-error').textContent = t('stopping');
  try { await call('POST', '/api/stop'); $('run-error').textContent = ''; } catch (e) { showRunError(e); } finally { $('stop').disabled = false; refresh(); }
});
for (const b of document.querySelectorAll('[data-marker]')) {
  b.addEventListener('click', async () => {
    const type = b.dataset.marker;
    const text = type === 'note' ? $('note').value.trim() : '';
    try { await call('POST', '/api/markers', {type, text}); if (type === 'note') $('note').value = ''; } catch (e) { showRunError(e); }
  });
}
$('show-participant').addEventListener('click', () => call('POST', '/api/participant/show').catch(showRunError));
$('ask-sus').addEventListener('click', async () => {
  try { await call('POST', '/api/sus'); await call('POST', '/api/participant/show').catch(() => {}); refresh(); } catch (e) { showRunError(e); }
});

// ---- pre-flight check ----
let preflightTimer = null;
let shotN = 0;
const meterPct = (db) => Math.max(0, Math.min(100, (db + 60) / 60 * 100));

function renderPreflight(p) {
  $('preflight-start').hidden = !!p.running;
  $('preflight-stop').hidden = !p.running;
  if (p.disk) $('disk-line').textContent = t('disk_line', {f: fmtBytes(p.disk.free_bytes), h: (p.disk.hours_left || 0).toFixed(1)});
  const problems = (p.problems || []).map((x) => el('div', {class: 'problem', role: 'alert', 'data-track': x.track}, lang === 'ru' ? x.message_ru : x.message_en));
  if (p.disk && (lang === 'ru' ? p.disk.warning_ru : p.disk.warning_en)) problems.push(el('div', {class: 'problem'}, lang === 'ru' ? p.disk.warning_ru : p.disk.warning_en));
  if (p.priority && !p.priority.raised) problems.push(el('div', {class: 'problem'}, lang === 'ru' ? p.priority.warning_ru : p.priority.warning_en));
  $('problems').replaceChildren(...problems);
  const devices = (p.devices || []).filter((d) => d.kind === 'screen' || d.kind === 'camera');
  const box = $('previews');
  if (box.children.length !== devices.length) {
    box.replaceChildren(...devices.map((d) => el('div', {class: 'preview', 'data-track': d.track},
      el('img', {alt: d.track}), el('div', {class: 'small'}, lang === 'ru' ? d.name_ru : d.name_en))));
  }
  shotN++;
  for (const tile of box.children) {
    const has = (p.snapshots || []).some((x) => x.track === tile.dataset.track);
    const img = tile.querySelector('img');
    if (has) img.src = `/api/preflight/snapshot/${encodeURIComponent(tile.dataset.track)}?n=${shotN}`;
  }
  const levels = p.levels || [];
  $('meters').tBodies[0].replaceChildren(...levels.map((l) => el('tr', {'data-track': l.track, 'data-channel': String(l.channel), 'data-rms': String(l.rms_db)},
    el('td', null, `${l.track} · ${t('channel')} ${l.channel + 1}${l.role ? ' (' + t('role_' + l.role) + ')' : ''}`),
    el('td', null, el('div', {class: 'meter'}, el('div', {style: `width:${meterPct(l.rms_db)}%`}))),
    el('td', {class: 'num small'}, `${l.rms_db.toFixed(0)} dB`))));
  const sync = p.sync || {};
  const f = sync.figures;
  $('sync-result').replaceChildren(...(f ? [el('div', {class: f.passed ? '' : 'problem'}, f.passed ? t('sync_ok') : t('sync_bad')),
    f.event_to_frame_ms ? el('div', null, t('event_frame', {m: f.event_to_frame_ms.median.toFixed(1)})) : null,
    f.event_to_audio_ms ? el('div', null, t('event_audio', {m: f.event_to_audio_ms.median.toFixed(1)})) : null,
    f.audio_video_offset_ms != null ? el('div', null, t('av_offset', {m: f.audio_video_offset_ms.toFixed(1)})) : null,
    ...(f.problems || []).map((x) => el('div', {class: 'problem'}, x))]
    : sync.error ? [el('div', {class: 'problem'}, sync.error)] : []));
}

async function pollPreflight() {
  try { renderPreflight(await call('GET', '/api/preflight')); } catch (e) { showRunError(e); }
}
$('preflight-start').addEventListener('click', async () => {
  try { await call('POST', '/api/preflight/start'); } catch (e) { $('problems').replaceChildren(el('div', {class: 'problem'}, e.message)); }
  clearInterval(preflightTimer); preflightTimer = setInterval(pollPreflight, 500); pollPreflight();
});
$('preflight-stop').addEventListener('click', async () => {
  clearInterval(preflightTimer); await call('POST', '/api/preflight/stop').catch(() => {}); pollPreflight();
});
$('sync-test').addEventListener('click', async () => {
  $('sync-test').disabled = true;
  $('sync-result').textContent = t('sync_running');
  try { await call('POST', '/api/preflight/sync'); } catch (e) { $('sync-result').textContent = e.message; }
  finally { $('sync-test').disabled = false; clearInterval(preflightTimer); pollPreflight(); }
});

applyLang();
refresh();
pollPreflight();
setInterval(refresh, 1000);
setInterval(() => { $('clock').textContent = new Date().toLocaleTimeString(lang === 'ru' ? 'ru-RU' : 'en-GB'); }, 1000);
