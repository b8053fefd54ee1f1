// Browser end-to-end test of the station console (lab-recorder console),
// driving Debian's Chromium through playwright-core as an operator and, in a
// second page, as the participant.
//
//   LAB_SCREENSHOTS=dir node tests/e2e/console.mjs http://127.0.0.1:7600 [phase]
//
// phase `session` (default): a session refused without consent, then started;
// two tasks started and ended, the participant's ratings and SEQ after each,
// SUS at the end. Phase `stop`: stops the recording from the page. Phase
// `uploaded`: the upload queue reaches «принято сервером». Phase
// `map` (BASE is lab-web's address, LAB_ADMIN/LAB_PASSWORD set): the journey
// map of child-benefit shows the participants' own answers.
// Prints one `ok - …` / `not ok - …` line per check; exits non-zero on a failure.
import {chromium} from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const BASE = (process.argv[2] || '').replace(/\/+$/, '');
const PHASE = process.argv[3] || 'session';
const SHOTS = process.env.LAB_SCREENSHOTS || 'target/e2e-screenshots';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(SHOTS, {recursive: true});

let failed = 0;
async function check(name, f) {
  try { await f(); console.log(`ok - ${name}`); } catch (e) { failed++; console.log(`not ok - ${name}: ${e.message.split('\n')[0]}`); }
}
const assert = (cond, msg) => { if (!cond) throw new Error(msg); };

const browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox']});
const ctx = await browser.newContext({viewport: {width: 1280, height: 900}, locale: 'ru-RU'});
const op = await ctx.newPage();
op.on('dialog', (d) => d.accept());
if (PHASE !== 'map') await op.goto(BASE + '/');
const shot = (p, name) => p.screenshot({path: path.join(SHOTS, `console-${name}.png`), fullPage: true});

/** The participant answers what the page asks, as a person would: clicks. */
async function answerParticipant(page, pick) {
  await page.waitForSelector('#send', {timeout: 10000});
  for (const step of await page.$$('.step')) {
    const groups = await step.$$('.choices');
    await (await groups[0].$(`button[data-value="${pick.emotion}"]`)).click();
    await (await groups[1].$(`button[data-value="${pick.significance}"]`)).click();
  }
  const seq = await page.$('.seq');
  if (seq) await (await seq.$(`button[data-value="${pick.seq}"]`)).click();
  await send(page);
}

/** Sends the answers and waits until the console took them (or says why not). */
async function send(page) {
  const before = Number(await page.evaluate(() => document.body.dataset.sent || 0));
  await page.click('#send');
  try {
    await page.waitForFunction((n) => Number(document.body.dataset.sent || 0) > n, before, {timeout: 15000});
  } catch (e) {
    throw new Error(`the answers were not taken: ${(await page.textContent('body')).slice(0, 300)}`);
  }
}

if (PHASE === 'session') {
  await check('the console page is Russian and shows the study and its consent text', async () => {
    await op.waitForSelector('#consent-text:not(:empty)', {timeout: 10000});
    assert((await op.getAttribute('html', 'lang')) === 'ru', 'lang');
    assert((await op.textContent('#new-session h2')).includes('Новая сессия'), 'heading');
    assert((await op.textContent('#consent-text')).includes('согласен'), 'consent text');
  });
  await check('pre-flight: screen and camera previews load and refresh, the meters move with the test tone', async () => {
    await op.click('#preflight-start');
    await op.waitForSelector('#previews .preview', {timeout: 10000});
    const tracks = await op.$$eval('#previews .preview', (ts) => ts.map((t) => t.dataset.track));
    assert(tracks.includes('screen') && tracks.includes('camera'), `previews: ${tracks}`);
    await op.waitForFunction(() => [...document.querySelectorAll('#previews img')].every((i) => i.complete && i.naturalWidth > 0), null, {timeout: 10000});
    const first = await op.$eval('#previews .preview[data-track="screen"] img', (i) => i.src);
    await op.waitForFunction((f) => document.querySelector('#previews .preview[data-track="screen"] img').src !== f, first, {timeout: 5000});
    await op.waitForFunction(() => [...document.querySelectorAll('#meters tr')].some((r) => Number(r.dataset.rms) > -30), null, {timeout: 10000});
    assert(/\d/.test(await op.textContent('#disk-line')), 'disk space shown');
    await shot(op, 'preflight');
  });
  await check('pre-flight: the sync self-test says clearly why it cannot run on test sources', async () => {
    await op.click('#sync-test');
    await op.waitForFunction(() => document.querySelector('#sync-result .problem'), null, {timeout: 30000});
    assert((await op.textContent('#sync-result')).length > 10, 'an explanation');
  });
  await check('a session without consent, or with a name for a code, is refused', async () => {
    await op.fill('#participant', 'P07');
    await op.fill('#consent-ref', 'C-2026-07');
    await op.click('#start');
    await op.waitForFunction(() => document.querySelector('#start-error').textContent.length > 0);
    assert((await op.textContent('#start-error')).includes('согласие'), await op.textContent('#start-error'));
    await op.fill('#participant', 'Иванов');
    await op.check('#consent-ok');
    await op.click('#start');
    await op.waitForFunction(() => document.querySelector('#start-error').textContent.includes('код'));
    assert(await op.isHidden('#running'), 'not started');
  });
  await check('with consent confirmed the recording starts', async () => {
    await op.fill('#participant', 'P07');
    await op.click('#start');
    await op.waitForSelector('#running:not([hidden])', {timeout: 30000});
    assert((await op.textContent('#run-participant')) === 'P07', 'participant shown');
  });
  const participant = await ctx.newPage();
  await participant.goto(BASE + '/participant');
  const answers = {find: {emotion: 'negative', significance: 5, seq: 2}, apply: {emotion: 'positive', significance: 3, seq: 6}};
  for (const task of ['find', 'apply']) {
    await check(`task ${task}: started, the participant sees its instruction, ended, ratings answered`, async () => {
      await op.click(`tr[data-task="${task}"] button[data-edge="start"]`);
      await op.waitForSelector(`tr[data-task="${task}"][data-state="running"]`, {timeout: 5000});
      await participant.waitForSelector('#instruction', {timeout: 10000});
      await op.waitForTimeout(1200);
      await op.click(`tr[data-task="${task}"] button[data-edge="end"]`);
      await op.waitForSelector(`tr[data-task="${task}"][data-state="ended"]`, {timeout: 5000});
      await participant.waitForSelector('.step', {timeout: 10000});
      if (task === 'find') await shot(participant, 'participant-ratings');
      await answerParticipant(participant, answers[task]);
    });
  }
  await check('a note and a help marker are accepted', async () => {
    await op.fill('#note', 'участник искал кнопку');
    await op.click('button[data-marker="note"]');
    await op.click('button[data-marker="help"]');
    await op.waitForFunction(() => document.querySelector('#note').value === '', null, {timeout: 5000});
    assert(!(await op.textContent('#run-error')), await op.textContent('#run-error'));
  });
  await check('SUS at the end, answered on the participant page', async () => {
    await op.click('#ask-sus');
    try {
      await participant.waitForSelector('.sus-item', {timeout: 15000});
    } catch (e) {
      const state = await (await fetch(BASE + '/api/participant')).text();
      throw new Error(`no SUS page; the page shows: ${(await participant.textContent('body')).slice(0, 200)}; the console says: ${state.slice(0, 300)}`);
    }
    const picks = [4, 2, 4, 1, 4, 2, 5, 2, 4, 3];
    const items = await participant.$$('.sus-item');
    assert(items.length === 10, `${items.length} items`);
    for (let i = 0; i < 10; i++) await (await items[i].$(`button[data-value="${picks[i]}"]`)).click();
    await shot(participant, 'participant-sus');
    await send(participant);
  });
  await check('elapsed time and event counts are live', async () => {
    await op.waitForFunction(() => Number(document.querySelector('#events-accepted').textContent) >= 10, null, {timeout: 5000});
    assert(/\d+:\d\d/.test(await op.textContent('#elapsed')), 'elapsed');
    assert(await op.isVisible('#stop'), 'stop button');
  });
  await shot(op, 'running');
} else if (PHASE === 'stop') {
  await check('after a console restart the page shows the running recording again', async () => {
    await op.waitForSelector('#running:not([hidden])', {timeout: 10000});
    assert((await op.textContent('#run-participant')) === 'P07', 'participant');
  });
  await check('Stop ends the recording and queues the upload', async () => {
    await op.click('#stop');
    await op.waitForSelector('#new-session:not([hidden])', {timeout: 60000});
    await op.waitForSelector('#uploads tr[data-bundle]', {timeout: 10000});
  });
} else if (PHASE === 'uploaded') {
  await check('after the server and the console were killed mid-upload, the queue shows the server acknowledged the bundle', async () => {
    await op.waitForSelector('#uploads tr[data-state="acknowledged"]', {timeout: 60000});
    await shot(op, 'uploaded');
  });
} else if (PHASE === 'map') {
  await check('lab-web: the journey map shows the participants answers beside the researchers', async () => {
    await op.goto(BASE + '/login');
    await op.waitForSelector('#login-form input[name=login]', {timeout: 15000});
    await op.fill('#login-form input[name=login]', process.env.LAB_ADMIN);
    await op.fill('#login-form input[name=password]', process.env.LAB_PASSWORD);
    await Promise.all([op.waitForURL((u) => !u.pathname.startsWith('/login'), {timeout: 15000}), op.click('#login-form button[type=submit]')]);
    await op.goto(BASE + '/journeys/child-benefit');
    await op.waitForSelector('tr.row-self-emotions', {timeout: 15000});
    const cell = await op.textContent('tr.row-self-emotions td[data-step="find"]');
    assert(/1/.test(cell), `self-reported emotions of find: ${cell}`);
    const sig = await op.textContent('tr.row-significance td[data-step="find"] .self-significance');
    assert(sig.includes('5'), `self-reported significance: ${sig}`);
    assert((await op.textContent('#task-table')).includes('find'), 'task table');
    assert((await op.textContent('#sus-table .sus-mean')).includes('77,5'), await op.textContent('#sus-table'));
    await shot(op, 'journey-self-report');
  });
  await check('lab-web: the admin page lists the station upload as imported', async () => {
    await op.goto(BASE + '/admin#uploads');
    await op.waitForSelector('.upload-row[data-status="imported"]', {timeout: 15000});
    assert((await op.textContent('.upload-row')).includes('room-1'), 'the station is named');
    await shot(op, 'admin-uploads');
  });
}
await browser.close();
process.exit(failed ? 1 : 0);
