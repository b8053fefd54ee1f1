// The participant's self-report page: asks what the console has pending (the
// steps of a finished task with emotion and significance, then the Single Ease
// Question; or SUS at the end) and sends the answers; otherwise shows the
// running task's instruction. Polls /api/participant every 2 s.
'use strict';

const $root = document.getElementById('root');
const RETURN = new URLSearchParams(location.search).get('return') === '1';
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') e.addEventListener('click', v); else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
const EMOTIONS = [['positive', 'Хорошо'], ['neutral', 'Нейтрально'], ['negative', 'Плохо']];
const AGREE = ['Совершенно не согласен', 'Не согласен', 'Затрудняюсь ответить', 'Согласен', 'Полностью согласен'];
let shownKey = '';
// Bumped at every render: an answer's late reply must not cover a newer page.
let generation = 0;

/** A row of buttons of which one can be chosen; `onpick(value)`. */
function choice(name, options, onpick) {
  const row = el('div', {class: 'choices', role: 'radiogroup', 'aria-label': name});
  const buttons = options.map(([value, label]) => el('button', {type: 'button', 'aria-pressed': 'false', 'data-value': String(value),
    onclick: () => { for (const b of buttons) b.setAttribute('aria-pressed', String(b === buttons.find((x) => x.dataset.value === String(value)))); onpick(value); }}, label));
  row.append(...buttons);
  return row;
}

async function call(method, path, body) {
  const r = await fetch(path, {method, headers: body ? {'Content-Type': 'application/json'} : {}, body: body ? JSON.stringify(body) : undefined});
  const v = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(v.error || r.statusText);
  return v;
}

function sendRow(ready, collect) {
  const err = el('p', {class: 'error', role: 'alert'});
  const send = el('button', {type: 'button', id: 'send', disabled: ''}, 'Отправить');
  send.addEventListener('click', async () => {
    send.disabled = true;
    const mine = generation;
    try {
      const r = await call('POST', '/api/participant/answer', collect());
      // For tests and tools: how many answers this page has sent.
      document.body.dataset.sent = String(Number(document.body.dataset.sent || 0) + 1);
      if (generation !== mine) return;
      shownKey = '';
      if (r.left === 0) {
        $root.replaceChildren(el('p', {class: 'thanks', id: 'thanks'}, 'Спасибо! Ваши ответы записаны.'));
        // Shown in the station browser by the console (`?return=1`): back to
        // the prototype where the participant was; otherwise stay here.
        setTimeout(() => { if (RETURN && history.length > 1) history.back(); else poll(); }, 1500);
      } else poll();
    } catch (e) { err.textContent = e.message; send.disabled = false; }
  });
  return {row: el('div', null, send, err), update: () => { send.disabled = !ready(); }};
}

function taskForm(p, seqQuestion) {
  const answers = {};
  let seq = null;
  const ready = () => p.steps.every((s) => answers[s.id] && answers[s.id].emotion && answers[s.id].significance) && (!p.seq || seq);
  const {row, update} = sendRow(ready, () => ({task: p.task.id,
    steps: p.steps.map((s) => ({step: s.id, emotion: answers[s.id].emotion, significance: answers[s.id].significance})),
    seq: p.seq ? seq : undefined}));
  const steps = p.steps.map((s) => {
    answers[s.id] = {};
    return el('div', {class: 'card step', 'data-step': s.id},
      el('h2', null, s.title),
      el('p', {class: 'muted'}, 'Как вам было на этом шаге?'),
      choice('Как вам было: ' + s.title, EMOTIONS, (v) => { answers[s.id].emotion = v; update(); }),
      el('p', {class: 'muted'}, 'Насколько этот шаг важен для вас? (1 — неважен, 5 — очень важен)'),
      choice('Важность: ' + s.title, [1, 2, 3, 4, 5].map((n) => [n, String(n)]), (v) => { answers[s.id].significance = v; update(); }));
  });
  const seqBox = p.seq ? el('div', {class: 'card seq'},
    el('h2', null, seqQuestion),
    choice(seqQuestion, [1, 2, 3, 4, 5, 6, 7].map((n) => [n, String(n)]), (v) => { seq = v; update(); }),
    el('div', {class: 'scale-ends'}, el('span', null, '1 — очень трудно'), el('span', null, '7 — очень легко'))) : null;
  return [el('h1', null, `Задание «${p.task.title || p.task.id}» завершено`),
    el('p', {class: 'muted'}, 'Ответьте, пожалуйста, на несколько вопросов. Правильных и неправильных ответов нет.'),
    ...steps, seqBox, row];
}

function susForm(p) {
  const answers = new Array(p.items_ru.length).fill(null);
  const {row, update} = sendRow(() => answers.every((a) => a), () => ({sus: answers}));
  const items = p.items_ru.map((text, i) => el('div', {class: 'card sus-item', 'data-item': String(i + 1)},
    el('h2', null, `${i + 1}. ${text}`),
    choice(text, AGREE.map((label, k) => [k + 1, `${k + 1} — ${label}`]), (v) => { answers[i] = v; update(); })));
  return [el('h1', null, 'Ваше общее впечатление о сервисе'),
    el('p', {class: 'muted'}, 'Отметьте, насколько вы согласны с каждым утверждением.'), ...items, row];
}

async function poll() {
  let s;
  try { s = await call('GET', '/api/participant'); } catch (_) { return; }
  const p = s.pending;
  const key = p ? JSON.stringify(p.kind === 'task' ? ['task', p.task.id] : ['sus']) : (s.task ? 'task-' + s.task.id : 'wait');
  if (key === shownKey) return;
  shownKey = key;
  generation++;
  if (p && p.kind === 'task') $root.replaceChildren(...taskForm(p, s.seq_question_ru));
  else if (p && p.kind === 'sus') $root.replaceChildren(...susForm(p));
  else if (s.task) $root.replaceChildren(el('h1', null, s.task.title), el('div', {class: 'card instruction', id: 'instruction'}, s.task.instruction));
  else $root.replaceChildren(el('p', {class: 'thanks'}, s.recording ? 'Подождите, пожалуйста: модератор скоро продолжит.' : 'Добро пожаловать!'));
  const first = $root.querySelector('button');
  if (first) first.focus();
}

poll();
setInterval(poll, 2000);
