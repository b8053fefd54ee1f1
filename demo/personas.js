#!/usr/bin/env node
/*
 * Scripted demo participants for the life situation «Рождение ребёнка:
 * единое пособие» (demo/prototype/). One persona walks the prototype in the
 * station's Chromium, which `lab-recorder record --browser URL` launched; we
 * connect to its DevTools port with playwright-core's connectOverCDP (no
 * browser of Playwright's own). Think-aloud speech is
 * synthesised with espeak-ng and played with paplay into the PulseAudio sink
 * whose monitor the station records; operator markers are POSTed to the
 * recorder's endpoint as an operator's console would.
 *
 * Ground truth goes to --truth (JSON, outside the bundle): step entries,
 * each injected friction (kind, detector expected to report it, step, time)
 * and each spoken phrase, all in session time. Session time is
 * CLOCK_MONOTONIC minus the manifest's clock.session_zero_monotonic_ns (the
 * recorder's pipeline clock is the monotonic clock, and Node's
 * process.hrtime reads the same clock); GET /api/clock cross-checks it.
 *
 *   node demo/personas.js --persona elderly --bundle DIR --events http://127.0.0.1:PORT \
 *        --recorder-pid PID --truth out/truth/ID.json [--quick] [--sink lab_sink] [--work DIR]
 *
 * --recorder-pid finds the DevTools port of the Chromium that recorder
 * launched (see recorderDevtools); --cdp PORT connects to a given port instead.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');
const { chromium } = require('playwright-core');

/* ---------------- arguments ---------------- */

function parseArgs(argv) {
  const a = { quick: false, sink: 'lab_sink', cdp: null, recorderPid: null };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const val = () => argv[++i];
    if (k === '--persona') a.persona = val();
    else if (k === '--bundle') a.bundle = val();
    else if (k === '--events') a.events = val().replace(/\/$/, '');
    else if (k === '--cdp') a.cdp = Number(val());
    else if (k === '--recorder-pid') a.recorderPid = Number(val());
    else if (k === '--truth') a.truth = val();
    else if (k === '--sink') a.sink = val();
    else if (k === '--work') a.work = val();
    else if (k === '--quick') a.quick = true;
    else if (k === '--situation') a.situation = val();
    else throw new Error('unknown argument ' + k);
  }
  if (!a.cdp && !a.recorderPid) throw new Error('--cdp PORT or --recorder-pid PID is required');
  for (const need of ['persona', 'bundle', 'events', 'truth']) {
    if (!a[need]) throw new Error('--' + need + ' is required');
  }
  const known = situation(a.situation).personas;
  if (!known[a.persona]) throw new Error('unknown persona ' + a.persona + '; one of ' + Object.keys(known).join(', '));
  return a;
}

/* ---------------- clock ---------------- */

let ZERO = 0n; // CLOCK_MONOTONIC ns at session time 0
const nowNs = () => Number(process.hrtime.bigint() - ZERO);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Sleeps until session time `ns`. */
async function until(ns) {
  const left = (ns - nowNs()) / 1e6;
  if (left > 0) await sleep(left);
}

async function clockCheck(events) {
  // Midpoint of the fastest of 5 round trips against the endpoint's clock.
  let best = null;
  for (let i = 0; i < 5; i++) {
    const t0 = nowNs();
    const r = await fetch(events + '/api/clock');
    const body = await r.json();
    const t1 = nowNs();
    const diff = body.session_ns - (t0 + t1) / 2;
    if (!best || t1 - t0 < best.rtt) best = { rtt: t1 - t0, diff };
  }
  return { offset_ms: best.diff / 1e6, rtt_ms: best.rtt / 1e6 };
}

/* ---------------- the station's browser ---------------- */

/**
 * The DevTools endpoint of the Chromium that `lab-recorder` (process `pid`)
 * launched. The recorder starts it with --remote-debugging-port=0 and a
 * profile in $TMPDIR/lab-chromium-<pid>-<nanos>/; Chromium writes the port it
 * chose to DevToolsActivePort there. (A fixed --remote-debugging-port passed
 * with --browser-arg does not work: Chromium then writes no DevToolsActivePort
 * and the recorder gives up after 20 s.)
 */
function recorderDevtools(pid) {
  const dir = os.tmpdir();
  const profiles = fs.readdirSync(dir).filter((n) => n.startsWith('lab-chromium-' + pid + '-'));
  for (const p of profiles) {
    try {
      const [port, wsPath] = fs.readFileSync(path.join(dir, p, 'DevToolsActivePort'), 'utf8').split('\n');
      if (port && wsPath) return 'ws://127.0.0.1:' + port.trim() + wsPath.trim();
    } catch (_) { /* not written yet */ }
  }
  return null;
}

/* ---------------- speech ---------------- */

/** WAV duration in seconds from its header (espeak-ng writes plain PCM). */
function wavSeconds(file) {
  const b = fs.readFileSync(file);
  let off = 12, rate = 0, bytes = 0, block = 0;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4), size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') { block = b.readUInt16LE(off + 20); rate = b.readUInt32LE(off + 4 + 4 + 4); }
    if (id === 'data') { bytes = Math.min(size, b.length - off - 8); break; }
    off += 8 + size + (size & 1);
  }
  return rate && block ? bytes / block / rate : 0;
}

/* ---------------- the session ---------------- */

class Session {
  constructor(args, persona) {
    this.a = args;
    this.p = persona;
    this.q = args.quick;
    this.work = args.work || fs.mkdtempSync(path.join(os.tmpdir(), 'lab-persona-'));
    this.truth = { steps: [], frictions: [], speech: [], markers: [] };
    this.players = [];
    this.phrases = new Map();
    this.step = null;
  }

  /** Quick or full figure (seconds), as ms. */
  d(quick, full) { return (this.q ? quick : full) * 1000; }
  pause(quick, full) { return sleep(this.d(quick, full === undefined ? quick : full)); }

  prepareSpeech() {
    const v = this.p.voice;
    let i = 0;
    for (const text of this.p.phrases) {
      const file = path.join(this.work, `phrase-${++i}.wav`);
      execFileSync('espeak-ng', ['-v', 'ru', '-s', String(v.speed), '-g', String(v.gap), '-p', String(v.pitch), '-w', file, text]);
      this.phrases.set(text, { file, seconds: wavSeconds(file) });
    }
  }

  /**
   * Plays a phrase into the station's sink; resolves when it has been played.
   * One voice: a phrase starts only after the previous one has ended (and
   * `pauseMs` after that).
   */
  say(text, pauseMs = 0) {
    const ph = this.phrases.get(text);
    if (!ph) throw new Error('phrase not prepared: ' + text);
    let started;
    const startedP = new Promise((r) => { started = r; });
    const done = (this.speaking || Promise.resolve()).then(() => sleep(pauseMs)).then(() => new Promise((resolve) => {
      const start = nowNs();
      const child = spawn('paplay', ['--device=' + this.a.sink, ph.file], { stdio: 'ignore' });
      const entry = { text, start_ns: start, end_ns: start + Math.round(ph.seconds * 1e9), step: this.step };
      this.truth.speech.push(entry);
      started(entry);
      child.on('exit', () => resolve());
    }));
    done.started = startedP; // resolves to the phrase's truth entry when playback begins
    this.speaking = done;
    this.players.push(done);
    return done;
  }

  async marker(data) {
    const r = await fetch(this.a.events + '/api/markers', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data) });
    const body = await r.json();
    if (r.status !== 201) throw new Error('marker refused: ' + r.status + ' ' + JSON.stringify(body));
    this.truth.markers.push(Object.assign({ t_ns: body.t_ns }, data));
    return body.t_ns;
  }

  /** Runs `act` (a click that navigates) and records entering `step` when the new page commits. */
  async enter(step, urlRe, act) {
    const committed = this.page.waitForURL(urlRe, { waitUntil: 'commit', timeout: 15000 });
    await act();
    await committed;
    const t = nowNs();
    this.truth.steps.push({ step, start_ns: t });
    this.step = step;
    await this.page.waitForLoadState('load');
    return t;
  }

  friction(f) {
    this.truth.frictions.push(Object.assign({ step: this.step }, f));
  }

  /** Clicks a field and types like a person: `cps` characters per second. */
  async type(selector, text, cps) {
    await this.page.click(selector);
    await sleep(250);
    await this.page.keyboard.type(text, { delay: Math.round(1000 / cps) });
  }

  /** Clicks near the middle of an element (a hand is not exact); returns the session time of the click. */
  async clickAt(selector, jitter) {
    const box = await this.page.locator(selector).boundingBox();
    const dx = (Math.random() * 2 - 1) * jitter, dy = (Math.random() * 2 - 1) * jitter;
    const t = nowNs();
    await this.page.mouse.click(box.x + box.width / 2 + dx, box.y + box.height / 2 + dy);
    return t;
  }

  async attach(file) {
    const chooser = this.page.waitForEvent('filechooser', { timeout: 10000 });
    await this.page.click('#pick-file');
    await (await chooser).setFiles(file);
  }
}

/* ---------------- the three personas ---------------- */

const BASE_RE = (p) => new RegExp(p.replace(/[.?]/g, '\\$&') + '($|[?#])');
const U = {
  index: BASE_RE('/index.html'),
  search: /\/search\.html/,
  service: BASE_RE('/service.html'),
  login: /\/login\.html/,
  benefit: BASE_RE('/apply/benefit.html'),
  child: BASE_RE('/apply/child.html'),
  documents: BASE_RE('/apply/documents.html'),
  payment: BASE_RE('/apply/payment.html'),
  review: BASE_RE('/apply/review.html'),
  status: BASE_RE('/apply/status.html'),
};

const PERSONAS = {
  /* A confident young parent: quick, one wrong click («Изменить тип пособия»
     instead of filling the form) and straight back. */
  confident: {
    participant: 'P-DEMO-01',
    description: 'уверенная молодая мама: быстро, один ошибочный клик и возврат',
    voice: { speed: 140, gap: 4, pitch: 50 },
    phrases: [
      'Так, мне нужно оформить единое пособие.',
      'Ой, не туда нажала, вернусь обратно.',
      'Так, вводим дату рождения.',
      'Прикрепляю свидетельство о рождении.',
      'Всё, заявление отправлено.',
    ],
    async run(s) {
      const pg = s.page;
      s.say('Так, мне нужно оформить единое пособие.');
      await s.pause(1.5, 3);
      await s.enter('find', U.search, () => pg.click('#sit-birth'));
      await s.pause(1.5, 3);
      await s.enter('find', U.service, () => pg.click('#svc-benefit'));
      await s.pause(2, 4);
      await s.enter('login', U.login, () => pg.click('#get-service'));
      await s.pause(1, 2);
      await s.type('#login', '+7 912 345-67-89', 14);
      await s.pause(0.5, 1);
      await s.type('#password', 'Demo-parol-2026', 12);
      await s.pause(0.7, 1.5);
      await s.enter('choose', U.benefit, () => pg.click('#login-submit'));
      await s.pause(1.5, 3);
      await pg.click('label.choice:has(#benefit-child)');
      await s.pause(0.8, 1.5);
      await s.enter('child', U.child, () => pg.click('#benefit-next'));
      await s.pause(1.5, 3);
      // The wrong click: the link under the form instead of the form.
      const back = await s.enter('choose', U.benefit, () => pg.click('#child-back'));
      s.friction({ kind: 'wrong_click_and_return', detector: 'backtrack', start_ns: back, end_ns: back,
        note: 'ошибочный клик «Изменить тип пособия» со сведений о ребёнке, возврат к выбору пособия' });
      await sleep(400);
      await s.say('Ой, не туда нажала, вернусь обратно.');
      await s.pause(0.8, 1.5);
      s.truth.frictions[s.truth.frictions.length - 1].end_ns = await s.enter('child', U.child, () => pg.click('#benefit-next'));
      await s.pause(1, 2);
      await s.type('#child-last', 'Иванова', 9);
      await s.pause(0.5, 1);
      await s.type('#child-first', 'Анна', 9);
      await s.pause(0.5, 1);
      await s.type('#child-middle', 'Сергеевна', 9);
      s.say('Так, вводим дату рождения.');
      await s.pause(0.8, 1.5);
      await s.type('#birth-date', '05.03.2025', 8);
      await s.pause(0.8, 1.5);
      await pg.click('#sex-f');
      await s.pause(0.8, 1.5);
      await s.enter('documents', U.documents, () => pg.click('#child-next'));
      await s.pause(2, 4);
      s.say('Прикрепляю свидетельство о рождении.');
      await s.pause(1, 2);
      await s.attach(s.file);
      await s.pause(1.5, 3);
      await s.enter('payment', U.payment, () => pg.click('#docs-next'));
      await s.pause(1.5, 3);
      await s.type('#card-number', '2200 1234 5678 9012', 10);
      await s.pause(1, 2);
      await s.enter('review', U.review, () => pg.click('#payment-next'));
      await s.pause(3, 6);
      await pg.click('label.choice:has(#agree)');
      await s.pause(1, 2);
      await s.enter('status', U.status, () => pg.click('#send'));
      await s.pause(1, 2);
      await s.say('Всё, заявление отправлено.');
      await s.pause(1, 3);
    },
  },

  /* A hurried worker: searches instead of browsing, types the birth date
     without dots, then with a typo (a date in the future), then right. */
  hurried: {
    participant: 'P-DEMO-02',
    description: 'спешащий работник: поиск, две ошибки проверки даты рождения и исправление',
    voice: { speed: 140, gap: 4, pitch: 50 },
    phrases: [
      'Так, вводим дату рождения.',
      'А, нужно с точками.',
      'Ой, опечатка.',
      'Отправляю.',
    ],
    async run(s) {
      const pg = s.page;
      await s.pause(1, 2);
      await s.type('#q', 'единое пособие', 16);
      await s.pause(0.3, 0.6);
      await s.enter('find', U.search, () => pg.keyboard.press('Enter'));
      await s.pause(1.2, 2);
      await s.enter('find', U.service, () => pg.click('#svc-benefit'));
      await s.pause(1, 2);
      await s.enter('login', U.login, () => pg.click('#get-service'));
      await s.pause(0.6, 1);
      await s.type('#login', 'petrov.m@example.ru', 18);
      await s.pause(0.3, 0.6);
      await s.type('#password', 'Spesh1t-2026', 16);
      await s.pause(0.3, 0.6);
      await s.enter('choose', U.benefit, () => pg.click('#login-submit'));
      await s.pause(1, 2);
      await pg.click('label.choice:has(#benefit-child)');
      await s.pause(0.5, 1);
      await s.enter('child', U.child, () => pg.click('#benefit-next'));
      await s.pause(1, 2);
      await s.type('#child-last', 'Петров', 14);
      await s.pause(0.4, 0.8);
      await s.type('#child-first', 'Максим', 14);
      await s.pause(0.4, 0.8);
      s.say('Так, вводим дату рождения.');
      await s.pause(0.6, 1);
      // First try: no dots. The field's first typing burst is where the struggle starts.
      await pg.click('#birth-date');
      await sleep(250);
      const struggle = nowNs();
      await pg.keyboard.type('12032025', { delay: 60 });
      await s.pause(1, 1.5);
      await pg.click('#child-next'); // «Введите дату в формате ДД.ММ.ГГГГ»
      await s.pause(1, 1.5);
      await s.say('А, нужно с точками.');
      await s.pause(0.5, 1);
      await pg.click('#birth-date');
      await pg.keyboard.press('Control+A');
      await pg.keyboard.type('12.03.2052', { delay: 60 }); // typo: a date in the future
      await s.pause(1, 1.5);
      await pg.click('#child-next'); // «Дата рождения не может быть в будущем»
      await s.pause(1.2, 2);
      await s.say('Ой, опечатка.');
      await s.pause(0.5, 1);
      await pg.click('#birth-date');
      await pg.keyboard.press('Control+A');
      await pg.keyboard.type('12.03.2025', { delay: 60 });
      const fixed = nowNs();
      s.friction({ kind: 'birth_date_validation_errors', detector: 'field_struggle', start_ns: struggle, end_ns: fixed,
        note: 'дата рождения: без точек, затем в будущем, затем верно (две ошибки проверки, три попытки)' });
      await s.pause(0.8, 1.5);
      await s.enter('documents', U.documents, () => pg.click('#child-next'));
      await s.pause(1.5, 2.5);
      await s.attach(s.file);
      await s.pause(1, 1.5);
      await s.enter('payment', U.payment, () => pg.click('#docs-next'));
      await s.pause(1, 2);
      await pg.click('label.choice:has(#how-account)');
      await s.pause(0.6, 1);
      await s.type('#bik', '044525225', 14);
      await s.pause(0.4, 0.8);
      await s.type('#account', '40817810099910004312', 14);
      await s.pause(0.6, 1);
      await s.enter('review', U.review, () => pg.click('#payment-next'));
      await s.pause(1.5, 3);
      await pg.click('label.choice:has(#agree)');
      s.say('Отправляю.');
      await s.pause(0.8, 1.5);
      await s.enter('status', U.status, () => pg.click('#send'));
      await s.pause(2, 4);
    },
  },

  /* An elderly first-time user: slow, stalls on the documents page, hammers
     the big decorative «Загрузить» that does nothing, asks the moderator,
     finally finds the small «выбрать на компьютере» link.
     Each utterance with a cue starts with a throwaway «Так.» and a 1 s pause,
     and the question follows the previous phrase within 2 s, so that both
     stay inside one VAD speech span: lab-analyze maps the first word(s) of a
     speech span that Whisper times into the silent joint before it to the
     end of the previous span, often tens of seconds earlier
     (chunks::Window::to_original), which splits «не понимаю» or «где здесь»
     and moves an utterance's start. The lead-in takes that hit. */
  elderly: {
    participant: 'P-DEMO-03',
    description: 'пожилой пользователь впервые: долгая пауза на документах, клики по неработающей области, вопрос модератору',
    voice: { speed: 130, gap: 4, pitch: 50 },
    phrases: [
      'Так, пособие на ребёнка.',
      'Так, вводим дату рождения.',
      'Так.',
      'Не понимаю. Куда тут нажимать?',
      'Не работает. Где здесь загрузить?',
      'А что здесь нужно нажать?',
      'А, вот здесь, мелко написано.',
    ],
    async run(s) {
      const pg = s.page;
      const cps = s.q ? 8 : 4; // typing speed, characters per second
      await s.pause(0.5, 3);
      await s.say('Так, пособие на ребёнка.');
      await s.pause(0.5, 3);
      await s.enter('find', U.search, () => pg.click('#sit-birth'));
      await s.pause(1.5, 6);
      await s.enter('find', U.service, () => pg.click('#svc-benefit'));
      await s.pause(1.5, 7);
      await s.enter('login', U.login, () => pg.click('#get-service'));
      await s.pause(1, 3);
      await s.type('#login', '123-456-789 01', cps);
      await s.pause(0.8, 3);
      await s.type('#password', 'Babushka1955', cps);
      await s.pause(0.8, 3);
      await s.enter('choose', U.benefit, () => pg.click('#login-submit'));
      await s.pause(1.5, 7);
      await pg.click('label.choice:has(#benefit-child)');
      await s.pause(0.8, 3);
      await s.enter('child', U.child, () => pg.click('#benefit-next'));
      await s.pause(1, 5);
      await s.type('#child-last', 'Смирнов', cps);
      await s.pause(0.6, 3);
      await s.type('#child-first', 'Иван', cps);
      await s.pause(0.6, 3);
      await s.say('Так, вводим дату рождения.');
      await s.type('#birth-date', '01.02.2025', cps);
      await s.pause(0.8, 3);
      await pg.click('#sex-m');
      await s.pause(0.8, 3);
      const docs = await s.enter('documents', U.documents, () => pg.click('#child-next'));

      // Stall: nothing done on the page, thinking aloud.
      await until(docs + s.d(3, 8) * 1e6);
      // A spoken friction is the whole utterance, lead-in included (`match: 'span'`).
      const lead1 = await s.say('Так.').started;
      const lost = await s.say('Не понимаю. Куда тут нажимать?', 1000).started;
      s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['question_to_moderator'],
        spoken: true, match: 'span', start_ns: lead1.start_ns, end_ns: lost.end_ns, note: '«не понимаю, куда тут нажимать» во время паузы' });
      await until(docs + s.d(13, 45) * 1e6);
      // Hammering the decorative drop zone, which has no handler.
      let rage = 0;
      for (let i = 0; i < 4; i++) {
        const t = await s.clickAt('.upload-hero', 10);
        rage = rage || t;
        if (i < 3) await sleep(320);
      }
      const rageEnd = nowNs();
      s.friction({ kind: 'stall', detector: 'hesitation', start_ns: docs, end_ns: rage,
        note: 'долгая пауза на шаге «Документы» без действий' });
      s.friction({ kind: 'unresponsive_element', detector: 'rage_click', also: ['dead_click'], start_ns: rage,
        end_ns: rageEnd, note: '4 клика подряд по декоративной области «Загрузить» без обработчика' });
      s.friction({ kind: 'unresponsive_element', detector: 'dead_click', also: ['rage_click'], start_ns: rage,
        end_ns: rageEnd, note: 'клики по «Загрузить» ничего не меняют на странице' });
      await s.pause(1.5, 2);
      const lead2 = s.say('Так.');
      const where = s.say('Не работает. Где здесь загрузить?', 1000);
      // The question follows within 2 s, in the same speech span (see above).
      const ask = s.say('А что здесь нужно нажать?', 1200);
      const l2 = await lead2.started, w = await where.started;
      s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['question_to_moderator'],
        spoken: true, match: 'span', start_ns: l2.start_ns, end_ns: w.end_ns, note: '«не работает, где здесь загрузить»' });
      await sleep(2000);
      await pg.mouse.move(640, 420);
      await pg.mouse.wheel(0, 160); // looks further down the page while talking
      const q = await ask.started;
      s.friction({ kind: 'question', detector: 'question_to_moderator', spoken: true, match: 'span', start_ns: q.start_ns,
        end_ns: q.end_ns, note: 'вопрос модератору; оператор отмечает просьбу о помощи' });
      await ask;
      await s.pause(0.3, 1);
      await s.marker({ type: 'help', label: 'Спрашивает, куда нажать на шаге «Документы»' });
      await s.pause(1.5, 2.5);
      await s.attach(s.file);
      await s.pause(1.5, 2);
      await s.say('А, вот здесь, мелко написано.');
      await s.pause(0.5, 3);
      const left = await s.enter('payment', U.payment, () => pg.click('#docs-next'));
      if (!s.q) {
        s.friction({ kind: 'slow_step', detector: 'step_overtime', step: 'documents', start_ns: docs, end_ns: left,
          note: 'шаг «Документы» больше чем вдвое дольше нормы (30 с)' });
      }
      await s.pause(1, 5);
      await s.type('#card-number', '2200 7000 1234 5678', cps);
      await s.pause(1, 4);
      await s.enter('review', U.review, () => pg.click('#payment-next'));
      await s.pause(2, 8);
      await pg.click('label.choice:has(#agree)');
      await s.pause(1, 4);
      await s.enter('status', U.status, () => pg.click('#send'));
      await s.pause(1.5, 6);
    },
  },
};

/* ---------------- life situations ---------------- */

/**
 * The life situation the personas walk: the demo's own (this file's
 * PERSONAS) or one under demo/situations/NAME/, whose personas.js exports a
 * function of the helpers returning { lifeSituation, task, first, personas }.
 */
function situation(name) {
  if (!name || name === 'child-benefit') {
    return {
      lifeSituation: 'child-benefit',
      task: 'Оформить единое пособие на ребёнка',
      first: { step: 'find', re: U.index, path: 'index.html' },
      personas: PERSONAS,
    };
  }
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error('bad situation name ' + name);
  return require(path.join(__dirname, 'situations', name, 'personas.js'))({ sleep, until, nowNs });
}

/* ---------------- main ---------------- */

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const sit = situation(a.situation);
  const persona = sit.personas[a.persona];
  const manifest = JSON.parse(fs.readFileSync(path.join(a.bundle, 'manifest.json'), 'utf8'));
  ZERO = BigInt(manifest.clock.session_zero_monotonic_ns);
  const s = new Session(a, persona);
  s.prepareSpeech();
  s.file = path.join(s.work, 'svidetelstvo-o-rozhdenii.pdf');
  fs.writeFileSync(s.file, '%PDF-1.4\n% demo: свидетельство о рождении (не настоящий документ)\n' + 'x'.repeat(24000) + '\n%%EOF\n');
  const clock = await clockCheck(a.events);

  // The station's Chromium: wait for its DevTools port and for the start page.
  let browser;
  for (let i = 0; ; i++) {
    const endpoint = a.cdp ? 'http://127.0.0.1:' + a.cdp : recorderDevtools(a.recorderPid);
    try {
      if (!endpoint) throw new Error('no DevToolsActivePort yet');
      browser = await chromium.connectOverCDP(endpoint, { timeout: 5000 });
      break;
    } catch (e) {
      if (i >= 80) throw new Error('cannot connect to the station Chromium (' + (endpoint || 'no port') + '): ' + e.message);
      await sleep(250);
    }
  }
  const context = browser.contexts()[0];
  let page = null;
  for (let i = 0; i < 80 && !page; i++) {
    page = context.pages().find((p) => /start\.html/.test(p.url())) || null;
    if (!page) await sleep(250);
  }
  if (!page) throw new Error('the station browser has no start page: ' + context.pages().map((p) => p.url()).join(', '));
  s.page = page;
  const base = page.url().replace(/start\.html.*$/, '');

  // PulseAudio delivers the first audio about 2 s into the session: start after that.
  await until(3.5e9);
  const taskStart = await s.marker({ type: 'task_start', label: sit.task });
  await sleep(300);
  await s.enter(sit.first.step, sit.first.re, () => page.goto(base + sit.first.path, { waitUntil: 'commit' }));
  await persona.run(s);
  await Promise.all(s.players);
  const taskEnd = await s.marker({ type: 'task_end', label: sit.task });

  // Close each visit at the next one, the last at task_end (as the analyzer does).
  const visits = {};
  const steps = [];
  for (const v of s.truth.steps) {
    if (steps.length && steps[steps.length - 1].step === v.step) continue; // same step, another page
    visits[v.step] = (visits[v.step] || 0) + 1;
    if (steps.length) steps[steps.length - 1].end_ns = v.start_ns;
    steps.push({ step: v.step, visit: visits[v.step], start_ns: v.start_ns, end_ns: null });
  }
  if (steps.length) steps[steps.length - 1].end_ns = taskEnd;

  const stepAt = (t) => (steps.find((v) => v.start_ns <= t && t < v.end_ns) || {}).step || null;
  for (const sp of s.truth.speech) sp.step = stepAt(sp.start_ns);
  const truth = {
    format_version: 1,
    persona: a.persona,
    description: persona.description,
    participant: persona.participant,
    session_id: manifest.session_id,
    bundle: path.resolve(a.bundle),
    quick: a.quick,
    prototype: base,
    clock: {
      source: 'CLOCK_MONOTONIC - manifest clock.session_zero_monotonic_ns',
      api_clock_offset_ms: Number(clock.offset_ms.toFixed(3)),
      api_clock_rtt_ms: Number(clock.rtt_ms.toFixed(3)),
    },
    task: { start_ns: taskStart, end_ns: taskEnd },
    steps,
    frictions: s.truth.frictions,
    speech: s.truth.speech,
    markers: s.truth.markers,
    voice: persona.voice,
  };
  fs.mkdirSync(path.dirname(a.truth), { recursive: true });
  fs.writeFileSync(a.truth, JSON.stringify(truth, null, 2) + '\n');
  console.log(`${a.persona}: ${steps.length} step visits, ${truth.frictions.length} frictions, ` +
    `${truth.speech.length} phrases, task ${((taskEnd - taskStart) / 1e9).toFixed(1)} s, ` +
    `clock check ${clock.offset_ms.toFixed(2)} ms (rtt ${clock.rtt_ms.toFixed(2)} ms)`);
  // Leave the station's browser to the recorder: just drop the DevTools connection.
  process.exit(0);
}

main().catch((e) => {
  console.error('personas.js: ' + (e && e.stack || e));
  process.exit(1);
});
