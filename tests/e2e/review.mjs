// Browser end-to-end test of lab-web's review UI, driving Debian's Chromium
// through playwright-core.
//
//   LAB_ADMIN=admin LAB_PASSWORD=... LAB_VIEWER=viewer LAB_VIEWER_PASSWORD=... \
//   LAB_SESSION=<session id with media, transcript and candidates> LAB_SCREENSHOTS=dir \
//   node tests/e2e/review.mjs http://127.0.0.1:18080
//
// LAB_SESSION's transcript must hold a Russian word: the search checks look
// for another form of one of its words (e.g. «кнопку» for «кнопка»).
//
// Prints one TAP-like line per check (`ok - ...` / `not ok - ...`) and exits
// non-zero when any check fails. The test changes data (accepts a candidate,
// creates a tag), so run it against a fresh data folder.
import {chromium} from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const BASE = (process.argv[2] || process.env.LAB_URL || '').replace(/\/+$/, '');
const env = (k) => process.env[k] || '';
const ADMIN = env('LAB_ADMIN'), ADMIN_PW = env('LAB_PASSWORD');
const VIEWER = env('LAB_VIEWER'), VIEWER_PW = env('LAB_VIEWER_PASSWORD');
const SESSION = env('LAB_SESSION');
const SHOTS = env('LAB_SCREENSHOTS') || 'target/e2e-screenshots';
const CHROMIUM = env('CHROMIUM') || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCHEMA = path.join(HERE, '..', '..', 'docs', 'findings-schema.json');

const missing = [['BASE_URL (argument)', BASE], ['LAB_ADMIN', ADMIN], ['LAB_PASSWORD', ADMIN_PW], ['LAB_VIEWER', VIEWER],
  ['LAB_VIEWER_PASSWORD', VIEWER_PW], ['LAB_SESSION', SESSION]].filter(([, v]) => !v).map(([k]) => k);
if (missing.length) {
  console.error(`review.mjs: missing ${missing.join(', ')}\nusage: LAB_ADMIN=.. LAB_PASSWORD=.. LAB_VIEWER=.. LAB_VIEWER_PASSWORD=.. LAB_SESSION=.. [LAB_SCREENSHOTS=dir] node review.mjs BASE_URL`);
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error(`review.mjs: ${CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium)`);
  process.exit(2);
}
fs.mkdirSync(SHOTS, {recursive: true});

// ---------- tiny harness ----------
let failed = 0, passed = 0;
async function check(name, fn) {
  const t0 = Date.now();
  try {
    const note = await fn();
    passed++;
    console.log(`ok - ${name}${note ? ` (${note})` : ''} [${Date.now() - t0} ms]`);
    return true;
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${String(e && e.message || e).split('\n')[0]}`);
    return false;
  }
}
function skip(name, why) { console.log(`ok - ${name} # SKIP ${why}`); }
function assert(cond, msg) { if (!cond) throw new Error(msg); }
const url = (p) => BASE + p;
/** "01:23.4" / "1:02:03.4" -> ms */
function parseClock(s) {
  const m = String(s).trim().replace('−', '-').match(/^(-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$/);
  if (!m) return NaN;
  const ms = ((Number(m[2] || 0) * 60 + Number(m[3])) * 60 + Number(m[4])) * 1000;
  return m[1] ? -ms : ms;
}
/** Other forms of a Russian word, by swapping its ending ("кнопка" -> "кнопку", "кнопки", ...). */
function wordForms(word) {
  const w = word.toLowerCase();
  const swaps = [['ает', ['ают', 'ать', 'ал']], ['ить', ['ит', 'ил', 'ишь']], ['ать', ['ает', 'ал']], ['ого', ['ый', 'ому']],
    ['ой', ['ая', 'ую', 'ого']], ['ый', ['ая', 'ого']], ['ий', ['ая', 'его']], ['ая', ['ой', 'ую']], ['ие', ['ия', 'ий']],
    ['ия', ['ии', 'ию']], ['ет', ['ут', 'ют']], ['ка', ['ку', 'ки', 'кой']], ['а', ['у', 'ы', 'ой']], ['я', ['ю', 'и']],
    ['у', ['а', 'ом']], ['ы', ['а', 'ам']], ['и', ['ей', 'ам']], ['о', ['а', 'ом']], ['е', ['а', 'ом']]];
  const out = [];
  for (const [end, repl] of swaps) {
    if (!w.endsWith(end) || w.length - end.length < 3) continue;
    for (const r of repl) out.push(w.slice(0, w.length - end.length) + r);
  }
  if (/[бвгджзклмнпрстфхцчшщ]$/.test(w)) out.push(w + 'а', w + 'у', w + 'ом');
  return [...new Set(out)].filter((f) => f !== w);
}
/** RFC 4180 CSV -> rows of cells (handles quotes, doubled quotes, CRLF and newlines inside quotes). */
function parseCsv(text) {
  const rows = []; let row = [], cell = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '"') { if (text[i + 1] === '"') { cell += '"'; i++; } else q = false; } else cell += c;
    } else if (c === '"') q = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') { if (c === '\r' && text[i + 1] === '\n') i++; row.push(cell); rows.push(row); row = []; cell = ''; }
    else cell += c;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows;
}
/** The subset of JSON Schema 2020-12 that docs/findings-schema.json uses. */
function validate(schema, value, at = '$', root = schema) {
  if (schema.$ref) return validate(schema.$ref.split('/').slice(1).reduce((o, k) => o[k], root), value, at, root);
  const errors = [];
  const typeOf = (v) => v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v;
  if (schema.type) {
    const types = [].concat(schema.type);
    const tv = typeOf(value);
    if (!types.includes(tv) && !(tv === 'integer' && types.includes('number'))) errors.push(`${at}: ${tv}, expected ${types.join('|')}`);
  }
  if ('const' in schema && value !== schema.const) errors.push(`${at}: ${JSON.stringify(value)} != ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${at}: ${JSON.stringify(value)} not in ${schema.enum.join(',')}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: ${value} < ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${at}: ${value} > ${schema.maximum}`);
  }
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const k of schema.required || []) if (!(k in value)) errors.push(`${at}: missing ${k}`);
    for (const [k, v] of Object.entries(value)) {
      if (schema.properties && schema.properties[k]) errors.push(...validate(schema.properties[k], v, `${at}.${k}`, root));
      else if (schema.additionalProperties === false) errors.push(`${at}: unexpected ${k}`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => errors.push(...validate(schema.items, v, `${at}[${i}]`, root)));
  return errors;
}

// ---------- browser ----------
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const pageErrors = [];
async function newPage() {
  const context = await browser.newContext({viewport: {width: 1280, height: 720}, locale: 'ru-RU', acceptDownloads: true});
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  return page;
}
async function shot(page, name) {
  const file = path.join(SHOTS, name + '.png');
  // From the top (a sticky header would otherwise land mid-page) and without transient toasts.
  await page.evaluate(() => { window.scrollTo(0, 0); for (const t of document.querySelectorAll('.toast')) t.remove(); });
  await page.screenshot({path: file, fullPage: true});
  assert(fs.statSync(file).size > 1000, `${file} is empty`);
  return file;
}
async function logIn(page, login, password) {
  await page.goto(url('/login'));
  await page.fill('#login-form input[name=login]', login);
  await page.fill('#login-form input[name=password]', password);
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith('/login'), {timeout: 15000}),
    page.click('#login-form button[type=submit]'),
  ]);
}

const sid = encodeURIComponent(SESSION);
const rowSel = `tr.session-row[data-id="${SESSION.replace(/"/g, '\\"')}"]`;
const S = {}; // facts later checks use: mediaUrl, journeyId, step, note, startMs...

try {
  let page = await newPage();

  // ---------- log-in ----------
  await check('log-in page shows the form in Russian', async () => {
    await page.goto(url('/login'));
    await page.waitForSelector('#login-form input[name=login]');
    const lang = await page.getAttribute('html', 'lang');
    assert(lang === 'ru', `html lang is ${lang}`);
    const text = await page.textContent('#login-form');
    assert(/Вход|Войти/.test(text), `no Russian in the form: ${text.slice(0, 80)}`);
    await shot(page, '01-login');
  });

  await check('a wrong password is refused with a message', async () => {
    await page.fill('#login-form input[name=login]', ADMIN);
    await page.fill('#login-form input[name=password]', ADMIN_PW + '-wrong');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login-form .form-error:not([hidden])');
    assert(new URL(page.url()).pathname === '/login', 'left the log-in page');
  });

  await check('the admin logs in and lands on the sessions list', async () => {
    await logIn(page, ADMIN, ADMIN_PW);
    assert(new URL(page.url()).pathname === '/', `at ${page.url()}`);
  });

  // ---------- sessions ----------
  await check('the sessions list shows the session, in Russian', async () => {
    await page.waitForSelector(rowSel);
    const nav = await page.textContent('#app-header');
    assert(nav.includes('Сессии') && nav.includes('Находки'), `header: ${nav}`);
    const row = await page.textContent(rowSel);
    assert(row.trim().length > 0, 'empty row');
    const body = await page.textContent('#main');
    assert(/[А-Яа-яЁё]{4,}/.test(body), 'no Cyrillic text on the page');
    await shot(page, '02-sessions');
    return row.replace(/\s+/g, ' ').trim().slice(0, 60);
  });

  // ---------- session review ----------
  await check('the session opens from its row', async () => {
    await Promise.all([
      page.waitForURL((u) => u.pathname === `/sessions/${sid}` || decodeURIComponent(u.pathname) === `/sessions/${SESSION}`),
      page.click(`${rowSel} a.session-link`),
    ]);
    await page.waitForSelector('video#screen');
    await page.waitForSelector('#transcript .word');
    await page.waitForSelector('#candidates .candidate');
    S.mediaUrl = await page.$eval('video#screen', (v) => v.getAttribute('src'));
    S.startMs = Number(await page.$eval('video#screen', (v) => v.dataset.startMs || '0'));
    const href = await page.getAttribute('#journey-link', 'href').catch(() => null);
    S.journeyId = href ? decodeURIComponent(href.replace(/^\/journeys\//, '')) : null;
    assert(S.mediaUrl, 'video#screen has no src');
    S.sessionOpen = true;
    return `media ${S.mediaUrl}, journey ${S.journeyId}`;
  });

  await check('play advances video#screen', async () => {
    await page.waitForFunction(() => (document.querySelector('video#screen') || {}).readyState >= 2, null, {timeout: 20000});
    const t0 = await page.$eval('video#screen', (v) => v.currentTime);
    await page.click('#play');
    await page.waitForFunction((t) => (document.querySelector('video#screen') || {currentTime: -1}).currentTime > t + 0.5, t0, {timeout: 10000});
    const t1 = await page.$eval('video#screen', (v) => v.currentTime);
    return `${t0.toFixed(2)} s -> ${t1.toFixed(2)} s`;
  });

  if (!S.sessionOpen || await page.$('video#camera')) {
    await check('the camera follows the screen', async () => {
      await page.waitForFunction(() => {
        const s = document.querySelector('video#screen'), c = document.querySelector('video#camera');
        if (!s || !c) return false;
        const off = (Number(c.dataset.startMs) - Number(s.dataset.startMs)) / 1000;
        return !c.paused && Math.abs(c.currentTime + off - s.currentTime) < 0.5;
      }, null, {timeout: 8000});
    });
  } else skip('the camera follows the screen', 'the session has no camera rendition');

  await check('clicking a transcript word seeks to its start (±0.3 s)', async () => {
    await page.$eval('video#screen', (v) => v.pause());
    const words = await page.$$('#transcript .word');
    assert(words.length >= 2, 'fewer than 2 words');
    // A word away from the current position, so the seek is visible.
    const target = words[Math.floor(words.length * 0.6)];
    const startMs = Number(await target.getAttribute('data-start-ms'));
    const expected = (startMs - S.startMs) / 1000;
    await target.click();
    await page.waitForFunction((e) => Math.abs((document.querySelector('video#screen') || {currentTime: NaN}).currentTime - e) <= 0.3, expected, {timeout: 5000});
    const got = await page.$eval('video#screen', (v) => v.currentTime);
    return `word at ${startMs} ms -> currentTime ${got.toFixed(2)} s (expected ${expected.toFixed(2)})`;
  });

  await check('a candidate explains its confidence: the rule, each adjustment, what was seen', async () => {
    const cand = await page.$('#candidates .candidate');
    const why = await cand.$('details.cand-why');
    assert(why, 'no explanation under the candidate');
    await (await why.$('summary')).click();
    const terms = await why.$$eval('.cand-basis li:not(.total) .delta', (n) => n.map((x) => x.textContent));
    assert(terms.length >= 1, 'no rule in the basis');
    // The terms add up to the confidence shown (each rounded to hundredths).
    const num = (x) => Number(x.replace('−', '-').replace(',', '.').replace(/[^0-9.+-]/g, ''));
    const sum = terms.map(num).reduce((a, b) => a + b, 0);
    const total = num(await why.$eval('.cand-basis .total .delta', (n) => n.textContent.replace('=', '')));
    assert(Math.abs(sum - total) <= 0.006 * terms.length, `terms ${terms} add up to ${sum}, not ${total}`);
    const seen = await why.$$eval('.cand-seen li', (n) => n.map((x) => x.textContent.trim()));
    assert(seen.length >= 1, 'nothing listed as seen');
    await shot(page, '03b-candidate-why');
    return `${terms.join(' ')} = ${total}; seen: ${seen.slice(0, 2).join(' | ')}`;
  });

  await check('accepting the first open candidate adds a tag', async () => {
    const before = await page.$$eval('#tags .tag', (n) => n.length);
    const cand = await page.$('#candidates .candidate:has(button.accept)');
    assert(cand, 'no open candidate with an accept button');
    const cid = await cand.getAttribute('data-id');
    await (await cand.$('button.accept')).click();
    await page.waitForFunction((n) => document.querySelectorAll('#tags .tag').length === n + 1, before);
    await page.waitForSelector(`#candidates .candidate[data-id="${cid}"][data-status="accepted"]`);
    S.accepted = cid.replace(/-\d+$/, '');
    return `candidate ${cid}`;
  });

  await check('rejecting a candidate needs a reason', async () => {
    assert(S.sessionOpen, 'the session page did not open');
    const cand = await page.$('#candidates .candidate:has(button.reject)');
    if (!cand) return 'no open candidate left (nothing to reject)';
    const cid = await cand.getAttribute('data-id');
    await (await cand.$('button.reject')).click();
    const item = `#candidates .candidate[data-id="${cid}"]`;
    await page.waitForSelector(`${item} input.reject-reason`);
    await page.click(`${item} button.reject-confirm`); // empty reason: must not be sent
    await page.waitForTimeout(300);
    assert(await page.$(`${item} input.reject-reason`), 'the form closed without a reason');
    await page.fill(`${item} input.reject-reason`, 'Ложное срабатывание: e2e');
    await page.click(`${item} button.reject-confirm`);
    await page.waitForSelector(`${item}[data-status="rejected"]`);
    S.rejected = cid.replace(/-\d+$/, '');
    return `candidate ${cid}`;
  });

  S.note = `e2e: участник не нашёл кнопку «Подать заявление» ${Date.now() % 100000}`;
  await check('I / O / T open the tag form with the marked range, and the tag is saved', async () => {
    // Two words of one participant segment: click the first, I; click a later one, O; then T.
    const seg = await page.$$('#transcript .seg[data-speaker="participant"]').then(async (segs) => {
      for (const s of segs) if ((await s.$$('.word')).length >= 3) return s;
      return (await page.$$('#transcript .seg')).find(Boolean);
    });
    assert(seg, 'no transcript segment');
    const words = await seg.$$('.word');
    const a = words[0], b = words[Math.min(words.length - 1, 2)];
    const aMs = Number(await a.getAttribute('data-start-ms'));
    let bMs = Number(await b.getAttribute('data-start-ms'));
    await page.$eval('video#screen', (v) => v.pause());
    await a.click();
    await page.waitForFunction((e) => Math.abs((document.querySelector('video#screen') || {currentTime: NaN}).currentTime - e) <= 0.3, (aMs - S.startMs) / 1000);
    await page.keyboard.press('KeyI');
    if (bMs - aMs < 500) { await page.keyboard.press('ArrowRight'); bMs = aMs + 5000; } else {
      await b.click();
      await page.waitForFunction((e) => Math.abs((document.querySelector('video#screen') || {currentTime: NaN}).currentTime - e) <= 0.3, (bMs - S.startMs) / 1000);
    }
    await page.keyboard.press('KeyO');
    await page.keyboard.press('KeyT');
    await page.waitForSelector('#tag-form', {state: 'visible'});
    const start = parseClock(await page.inputValue('#tag-form input[name=start]'));
    const end = parseClock(await page.inputValue('#tag-form input[name=end]'));
    assert(Math.abs(start - aMs) <= 300, `start ${start} ms, marked ${aMs} ms`);
    assert(Math.abs(end - bMs) <= 300, `end ${end} ms, marked ${bMs} ms`);
    const quote = await page.inputValue('#tag-form textarea[name=quote]');
    // The step: keep the preselected one, or take the first real step.
    let step = await page.inputValue('#tag-form select[name=step]');
    if (!step) {
      step = await page.$$eval('#tag-form select[name=step] option', (o) => (o.find((x) => x.value) || {}).value || '');
      if (step) await page.selectOption('#tag-form select[name=step]', step);
    }
    assert(step, 'no journey step to choose');
    S.step = step;
    await page.selectOption('#tag-form select[name=category]', 'comprehension');
    await page.selectOption('#tag-form select[name=severity]', '3');
    await page.check('#tag-form [name=emotion][value=negative]');
    await page.fill('#tag-form textarea[name=note]', S.note);
    const before = await page.$$eval('#tags .tag', (n) => n.length);
    await page.click('#tag-form button[type=submit]');
    await page.waitForFunction((n) => document.querySelectorAll('#tags .tag').length === n + 1, before);
    const tag = await page.waitForSelector(`#tags .tag:has-text("${S.note.replace(/"/g, '\\"')}")`);
    S.tagId = await tag.getAttribute('data-id');
    await page.waitForSelector('#tag-form', {state: 'hidden'});
    await shot(page, '03-session');
    return `tag ${S.tagId} ${start}-${end} ms, step ${step}, quote «${quote.slice(0, 40)}»`;
  });

  await check('the tag history lists its creation', async () => {
    assert(S.tagId, 'no tag from the previous check');
    await page.click(`#tags .tag[data-id="${S.tagId}"] button.history`);
    await page.waitForSelector(`#tags .tag[data-id="${S.tagId}"] .history-list li`);
  });

  // ---------- journey map ----------
  await check('the journey map shows the tag in its step column', async () => {
    assert(S.journeyId, 'the session page links no journey map');
    assert(S.step, 'no step from the tag check');
    await page.goto(url(`/journeys/${encodeURIComponent(S.journeyId)}`));
    const stepSel = `#journey-map th.step[data-step="${S.step}"]`;
    await page.waitForSelector(stepSel);
    const cell = `#journey-map tr.row-problems td[data-step="${S.step}"]`;
    await page.waitForSelector(`${cell} .problem[data-category="comprehension"]`);
    const text = await page.textContent(cell);
    await shot(page, '04-journey');
    return text.replace(/\s+/g, ' ').trim().slice(0, 80);
  });

  await check('the journey map measures each detector against the decisions', async () => {
    assert(S.accepted && S.rejected, 'no accepted and rejected candidate from the checks before');
    const share = async (d) => page.textContent(`#reliability tr[data-detector="${d}"] .accepted-share`);
    const [yes, no] = [await share(S.accepted), await share(S.rejected)];
    if (S.accepted === S.rejected) {
      assert(/1\/2/.test(yes) && /50/.test(yes), `${S.accepted}: ${yes}`);
    } else {
      // The only decision on each: one accepted (1 of 1), one rejected (0 of 1).
      assert(/1\/1/.test(yes) && /100/.test(yes), `${S.accepted}: ${yes}`);
      assert(/0\/1/.test(no), `${S.rejected}: ${no}`);
    }
    return `${S.accepted} ${yes.trim()}, ${S.rejected} ${no.trim()}`;
  });

  await check('the journey map\'s steps share the page width (3 steps fit 600 px, as 9 fit 1366 px)', async () => {
    // A 9-step map once overflowed the page (the last step off-screen even
    // at 2,100 px): columns had a 190 px minimum and the panel clipped them.
    // Now a step column needs 118 px beside the 130 px row heads, so the
    // test's 3-step map must fit a 600 px window whole (with 190 px it
    // needed 700 px), the same rule that fits 9 steps on a 1366 px laptop.
    await page.setViewportSize({width: 600, height: 720});
    try {
      const fit = await page.$eval('#journey-map .table-scroll', (box) => {
        const ths = box.querySelectorAll('th.step');
        const last = ths[ths.length - 1].getBoundingClientRect();
        const b = box.getBoundingClientRect();
        return {n: ths.length, lastRight: last.right, boxRight: b.right, page: document.documentElement.clientWidth,
          scroll: box.scrollWidth - box.clientWidth};
      });
      assert(fit.n >= 3, `only ${fit.n} steps on the map`);
      assert(fit.lastRight <= fit.boxRight + 1 && fit.boxRight <= fit.page + 1 && fit.scroll <= 1,
        `the last of ${fit.n} steps ends at ${fit.lastRight} px, the map at ${fit.boxRight} px, the page at ${fit.page} px`);
      return `${fit.n} steps within ${Math.round(fit.boxRight)} px of ${fit.page}`;
    } finally {
      await page.setViewportSize({width: 1280, height: 720});
    }
  });

  await check('journey-map quotes link to their session moment and tag (?t=…&tag=…)', async () => {
    const hrefs = await page.$$eval('#journey-map .quote a.participant-link', (as) => as.map((a) => a.getAttribute('href')));
    assert(hrefs.length > 0, 'no quote links on the journey map');
    const params = hrefs.map((h) => new URL(h, 'http://x').searchParams);
    const bad = hrefs.filter((h, i) => !params[i].get('tag'));
    assert(!bad.length, `quote links without tag=: ${bad.slice(0, 3).join(', ')}`);
    const timed = params.filter((p) => /^\d+$/.test(p.get('t') || '')).length;
    assert(timed > 0, `no quote link carries t=: ${hrefs.slice(0, 3).join(', ')}`);
    return `${hrefs.length} links, ${timed} with t`;
  });

  // ---------- exports ----------
  await check('findings JSON has schema_version 1 and matches docs/findings-schema.json', async () => {
    const r = await page.request.get(url('/api/v1/findings?format=json'));
    assert(r.status() === 200, `HTTP ${r.status()}`);
    const data = await r.json();
    assert(data.schema_version === 1, `schema_version ${data.schema_version}`);
    assert(Array.isArray(data.findings) && data.findings.length >= 2, `findings: ${data.findings && data.findings.length}`);
    const schema = JSON.parse(fs.readFileSync(SCHEMA, 'utf8'));
    const errors = validate(schema, data);
    assert(!errors.length, `${errors.length} schema errors, first: ${errors[0]}`);
    const mine = data.findings.find((f) => f.note === S.note);
    assert(mine, 'the tag made in this run is missing');
    assert(mine.step === S.step && mine.category === 'comprehension' && mine.severity === 3 && mine.emotion === 'negative',
      `fields differ: ${JSON.stringify(mine).slice(0, 200)}`);
    assert(mine.session_id === SESSION, `session_id ${mine.session_id}`);
    // The accepted candidate's tag says why the analysis proposed it.
    const accepted = data.findings.find((f) => /уверенность \d+ %: правило «/.test(f.note || ''));
    assert(accepted, 'no finding carries an accepted candidate\'s explanation');
    return `${data.findings.length} findings; ${accepted.note.split('\n').pop().slice(0, 80)}`;
  });

  await check('findings CSV: UTF-8 BOM, header row, Cyrillic intact', async () => {
    const r = await page.request.get(url('/api/v1/findings?format=csv'));
    assert(r.status() === 200, `HTTP ${r.status()}`);
    const bytes = await r.body();
    assert(bytes[0] === 0xEF && bytes[1] === 0xBB && bytes[2] === 0xBF, `starts with ${bytes.subarray(0, 3).toString('hex')}`);
    const rows = parseCsv(new TextDecoder('utf-8', {fatal: true}).decode(bytes.subarray(3)));
    const header = rows[0];
    assert(header.length >= 10, `header has ${header.length} columns`);
    for (const col of ['Участник', 'Шаг', 'Категория', 'Эмоция', 'Цитата', 'Заметка']) {
      assert(header.includes(col), `header lacks ${col}: ${header.join(',')}`);
    }
    const mine = rows.find((row) => row.includes(S.note));
    assert(mine, 'the Cyrillic note of this run is not in any row intact');
    assert(mine.length === header.length, `row has ${mine.length} cells, header ${header.length}`);
    return `${rows.length - 1} rows`;
  });

  await check('EAF parses as ELAN XML with step, transcript, event and tag tiers', async () => {
    const r = await page.request.get(url(`/api/v1/sessions/${sid}/export.eaf`));
    assert(r.status() === 200, `HTTP ${r.status()}`);
    const xml = await r.text();
    // Node has no DOMParser; the page's does the parsing.
    const info = await page.evaluate((text) => {
      const doc = new DOMParser().parseFromString(text, 'application/xml');
      const err = doc.getElementsByTagName('parsererror')[0];
      if (err) return {error: err.textContent.slice(0, 200)};
      const slots = new Set([...doc.querySelectorAll('TIME_ORDER > TIME_SLOT')].map((s) => s.getAttribute('TIME_SLOT_ID')));
      const refs = [...doc.querySelectorAll('ALIGNABLE_ANNOTATION')].flatMap((a) => [a.getAttribute('TIME_SLOT_REF1'), a.getAttribute('TIME_SLOT_REF2')]);
      return {
        root: doc.documentElement.nodeName,
        timeOrder: doc.getElementsByTagName('TIME_ORDER').length,
        slots: slots.size,
        refs: refs.length,
        dangling: refs.filter((r) => !slots.has(r)).slice(0, 5),
        tiers: [...doc.getElementsByTagName('TIER')].map((t) => [t.getAttribute('TIER_ID'), t.getElementsByTagName('ANNOTATION').length]),
      };
    }, xml);
    assert(!info.error, `XML error: ${info.error}`);
    assert(info.root === 'ANNOTATION_DOCUMENT', `root ${info.root}`);
    assert(info.timeOrder === 1 && info.slots > 0, `TIME_ORDER ${info.timeOrder}, slots ${info.slots}`);
    assert(info.refs > 0 && info.dangling.length === 0, `unresolved TIME_SLOT_REF: ${info.dangling.join(',')}`);
    const tier = (re) => info.tiers.find(([id]) => re.test(id || ''));
    for (const [what, re] of [['steps', /шаг|step/i], ['transcript', /речь|speech|transcript/i], ['events', /событ|event/i], ['tags', /тег|tag/i]]) {
      const found = tier(re);
      assert(found, `no ${what} tier among ${info.tiers.map(([id]) => id).join(', ')}`);
      assert(found[1] > 0, `the ${what} tier ${found[0]} is empty`);
    }
    return info.tiers.map(([id, n]) => `${id}:${n}`).join(', ');
  });

  await check('WebVTT export starts with WEBVTT', async () => {
    const r = await page.request.get(url(`/api/v1/sessions/${sid}/export.vtt`));
    assert(r.status() === 200, `HTTP ${r.status()}`);
    const text = (await r.text()).replace(/^\uFEFF/, '');
    assert(text.startsWith('WEBVTT'), `starts with ${JSON.stringify(text.slice(0, 20))}`);
  });

  // ---------- findings and admin pages ----------
  await check('the findings page lists the new finding', async () => {
    await page.goto(url('/findings'));
    await page.waitForSelector(`#findings .finding-row:has-text("${S.note.replace(/"/g, '\\"')}")`);
    await shot(page, '05-findings');
  });

  await check('a finding opens its session at the tag: ?t=start_ms&tag=id seeks and highlights', async () => {
    assert(S.tagId, 'no tag from the tag check');
    const link = `#findings .finding-row[data-id="${S.tagId}"] a.finding-session-link`;
    const href = await page.getAttribute(link, 'href');
    const u = new URL(href, BASE);
    assert(decodeURIComponent(u.pathname) === `/sessions/${SESSION}`, `links to ${href}`);
    assert(u.searchParams.get('tag') === String(S.tagId), `tag= is ${u.searchParams.get('tag')} in ${href}`);
    const tMs = Number(u.searchParams.get('t'));
    assert(u.searchParams.get('t') !== null && isFinite(tMs), `no t= in ${href}`);
    await Promise.all([page.waitForURL((x) => x.pathname.startsWith('/sessions/')), page.click(link)]);
    await page.waitForSelector(`#tags .tag.linked[data-id="${S.tagId}"]`);
    const expected = (tMs - S.startMs) / 1000;
    await page.waitForFunction((e) => {
      const v = document.querySelector('video#screen');
      return v && v.readyState >= 1 && Math.abs(v.currentTime - e) <= 0.5;
    }, expected, {timeout: 15000});
    return `${href} -> currentTime ≈ ${expected.toFixed(2)} s`;
  });

  // ---------- transcript search ----------
  await check('the admin header links the transcript search', async () => {
    await page.waitForSelector('#app-header nav a[href="/search"]');
    const text = await page.textContent('#app-header nav a[href="/search"]');
    assert(text.trim() === 'Поиск', `link text ${text}`);
  });

  await check('the API finds another form of a transcript word in the session', async () => {
    const r = await page.request.get(url(`/api/v1/sessions/${sid}/transcript`));
    assert(r.status() === 200, `transcript: HTTP ${r.status()}`);
    const words = [...new Set((await r.json()).segments.flatMap((g) => (g.text || '').match(/[А-Яа-яЁё]+/g) || []))];
    assert(words.length, 'the transcript has no Russian words');
    const tried = [];
    // Long words with a changed ending (the stemmer must meet them); short ones as they are.
    const candidates = words.filter((w) => w.length >= 5).flatMap((w) => wordForms(w).map((f) => [w, f]))
      .concat(words.filter((w) => w.length >= 3 && w.length < 5).map((w) => [w, w.toLowerCase()]));
    for (const [word, form] of candidates.slice(0, 40)) {
      const s = await page.request.get(url('/api/v1/search?q=' + encodeURIComponent(form)));
      assert(s.status() === 200, `search: HTTP ${s.status()}`);
      // Prefer a hit away from 0 s, so the seek on the session page is visible.
      const mine = ((await s.json()).hits || []).filter((h) => h.session_id === SESSION);
      const hit = mine.find((h) => h.start_ms >= 1000) || mine[0];
      tried.push(form);
      if (hit) { S.search = {word, form, startMs: hit.start_ms}; return `«${word}» found as «${form}» at ${hit.start_ms} ms`; }
    }
    throw new Error(`no form found the session: ${tried.slice(0, 12).join(', ')}`);
  });

  await check('/search?q=<word form> lists the session\'s hit with the word marked', async () => {
    assert(S.search, 'no word form from the previous check');
    await page.goto(url('/search?q=' + encodeURIComponent(S.search.form)));
    const group = `#search-results .search-group[data-session-id="${SESSION.replace(/"/g, '\\"')}"]`;
    await page.waitForSelector(`${group} .search-hit`);
    assert(await page.inputValue('#search-q') === S.search.form, 'the query box does not show the query from the URL');
    const hits = await page.$$eval(`${group} .search-hit`, (n) => n.map((h) => Number(h.dataset.startMs)));
    assert(hits.includes(S.search.startMs), `hits at ${hits.join(',')} ms, the API said ${S.search.startMs}`);
    const marks = await page.$$eval(`${group} .search-hit mark`, (m) => m.map((x) => x.textContent));
    assert(marks.length > 0, 'no word is marked in the hits');
    assert(marks.some((m) => m.toLowerCase().replace(/ё/g, 'е').slice(0, 4) === S.search.word.toLowerCase().replace(/ё/g, 'е').slice(0, 4)),
      `marked ${marks.join(',')}, not «${S.search.word}»`);
    const summary = await page.textContent('#search-summary');
    assert(/мс/.test(summary) && /\d/.test(summary), `summary: ${summary}`);
    await shot(page, '07-search');
    return `${hits.length} hit(s), marked ${marks.join(', ')}; ${summary.trim()}`;
  });

  await check('a new query goes into the URL and Back returns to the previous one', async () => {
    assert(S.search, 'no word form');
    const other = 'щщыжъзз';
    await page.fill('#search-q', other);
    await Promise.all([page.waitForURL((u) => u.searchParams.get('q') === other), page.press('#search-q', 'Enter')]);
    await page.waitForSelector('#search-state[data-state="empty"]');
    assert(!(await page.$('#search-results .search-hit')), 'hits for a nonsense query');
    await page.goBack();
    await page.waitForFunction((q) => new URL(location.href).searchParams.get('q') === q, S.search.form);
    await page.waitForSelector('#search-results .search-hit');
    assert(await page.inputValue('#search-q') === S.search.form, 'Back did not restore the query box');
  });

  await check('clicking a hit opens the session at its moment (video#screen within 0.5 s)', async () => {
    assert(S.search, 'no search hit');
    const link = `#search-results .search-group[data-session-id="${SESSION.replace(/"/g, '\\"')}"] .search-hit[data-start-ms="${S.search.startMs}"] a.hit-link`;
    const href = await page.getAttribute(link, 'href');
    assert(new URL(href, BASE).searchParams.get('t') === String(S.search.startMs), `hit links to ${href}`);
    await Promise.all([
      page.waitForURL((u) => decodeURIComponent(u.pathname) === `/sessions/${SESSION}` && u.searchParams.get('t') === String(S.search.startMs)),
      page.click(link),
    ]);
    await page.waitForSelector('video#screen');
    const startMs = Number(await page.$eval('video#screen', (v) => v.dataset.startMs || '0'));
    const expected = (S.search.startMs - startMs) / 1000;
    await page.waitForFunction((e) => {
      const v = document.querySelector('video#screen');
      return v && v.readyState >= 1 && Math.abs(v.currentTime - e) <= 0.5;
    }, expected, {timeout: 15000});
    const got = await page.$eval('video#screen', (v) => v.currentTime);
    assert(await page.$('#transcript .seg.linked'), 'the transcript marks no segment at the linked time');
    return `${href}: currentTime ${got.toFixed(2)} s, expected ${expected.toFixed(2)} s`;
  });

  await check('the admin page lists users, tokens, jobs and the audit log', async () => {
    await page.goto(url('/admin'));
    await page.waitForSelector(`#users tr.user-row`);
    await page.waitForSelector('#audit tr.audit-row');
    const users = await page.textContent('#users');
    assert(users.includes(ADMIN) && users.includes(VIEWER), 'the user list lacks the admin or the viewer');
    await shot(page, '06-admin');
  });

  await check('log out returns to the log-in page', async () => {
    await Promise.all([page.waitForURL((u) => u.pathname === '/login'), page.click('#logout')]);
    const r = await page.request.get(url('/api/v1/me'));
    assert(r.status() === 401, `/api/v1/me after logout: HTTP ${r.status()}`);
  });

  // ---------- viewer ----------
  await page.context().close();
  page = await newPage();
  await check('the viewer logs in and sees the session', async () => {
    await logIn(page, VIEWER, VIEWER_PW);
    await page.waitForSelector(rowSel);
  });

  await check('the viewer gets 403 for the screen media', async () => {
    const media = S.mediaUrl || `/api/v1/sessions/${sid}/media/screen.mp4`;
    const r = await page.request.get(url(media), {headers: {Range: 'bytes=0-1023'}});
    assert(r.status() === 403, `HTTP ${r.status()} for ${media}`);
  });

  await check('the viewer sees «Запись недоступна» instead of the player', async () => {
    await page.goto(url(`/sessions/${sid}`));
    await page.waitForSelector('#media-unavailable');
    const text = await page.textContent('#media-unavailable');
    assert(text.includes('Запись недоступна'), text);
    assert(!(await page.$('video#screen')), 'video#screen is present for a viewer');
  });

  await check('the viewer gets «недоступно» on /search, no hits and no search link', async () => {
    const q = (S.search && S.search.form) || 'кнопка';
    const api = await page.request.get(url('/api/v1/search?q=' + encodeURIComponent(q)));
    assert(api.status() === 403, `/api/v1/search for the viewer: HTTP ${api.status()}`);
    await page.goto(url('/search?q=' + encodeURIComponent(q)));
    await page.waitForSelector('#search-state[data-state="forbidden"]');
    const text = await page.textContent('#search-state');
    assert(/недоступно/i.test(text), text);
    assert(!(await page.$('#search-results .search-hit')), 'hits are shown to the viewer');
    assert(!(await page.$('#app-header nav a[href="/search"]')), 'the viewer\'s header links the search');
    return text.trim().slice(0, 60);
  });

  await check('the viewer sees the journey map', async () => {
    assert(S.journeyId, 'no journey id');
    await page.goto(url(`/journeys/${encodeURIComponent(S.journeyId)}`));
    await page.waitForSelector('#journey-map table th.step');
    const n = await page.$$eval('#journey-map th.step', (x) => x.length);
    assert(n > 0, 'no steps');
    return `${n} steps`;
  });

  await check('no uncaught JavaScript errors in the pages', async () => {
    assert(!pageErrors.length, `${pageErrors.length}: ${pageErrors[0]}`);
  });
} catch (e) {
  failed++;
  console.log(`not ok - the test itself broke: ${e && e.stack || e}`);
} finally {
  await browser.close();
}
console.log(`# ${passed} passed, ${failed} failed; screenshots in ${SHOTS}`);
process.exit(failed ? 1 : 0);
