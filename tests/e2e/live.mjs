// The observation room end to end (tests/tests/live.rs): OBSERVERS headless
// Chromium observers log in to lab-web and open the live view of a session
// the station is recording; the station's own Chromium (over CDP) turns its
// page white FLASHES times; each observer's page finds each flash in the
// frames it shows (requestVideoFrameCallback, the frame drawn into a canvas)
// and notes when it was shown. Then the first observer types a note and the
// others wait for it in their event lists. Last the station's participant
// clicks a dead button (#dead, «Далее»), a disabled one (#off, «Отправить»)
// and a working one (#works): each observer must hint the first two only.
//
// node live.mjs LAB_WEB_URL SESSION_ID STATION_DEVTOOLS_WS LOGIN PASSWORD OBSERVERS FLASHES SHOTS_DIR STEP_TITLE
// (STEP_TITLE: the journey step every observer must be shown as current)
// Prints one JSON line: {flips, seen: [[ms after its flip, ...] per observer],
// note: {typed_unix_ms, text, arrived_ms: [...]}, delays: [...],
// dead_click: {hinted_ms: [ms or null per observer], hints: [[text, ...] per observer]}}.

import {chromium} from 'playwright-core';

const [base, id, stationWs, login, password, nObs, nFlash, shots, stepTitle] = process.argv.slice(2);
const OBSERVERS = Number(nObs);
const FLASHES = Number(nFlash);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await chromium.launch({executablePath: CHROMIUM,
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required']});
const pages = [];
for (let i = 0; i < OBSERVERS; i++) {
  const ctx = await browser.newContext({viewport: {width: 1280, height: 800}});
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`observer ${i}: ${e}`));
  await page.goto(`${base}/login?next=${encodeURIComponent('/live/' + id)}`);
  await page.fill('#login-login', login);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.waitForURL(`**/live/${id}`);
  await page.waitForSelector('#live-screen');
  pages.push(page);
}

// Each observer is shown the journey step the participant is in.
await Promise.all(pages.map((p) => p.waitForFunction((title) =>
  (document.getElementById('live-step') || {}).textContent.includes(title), stepTitle, {timeout: 15000})));

// Each observer: wait for frames, then watch the luminance of every frame shown.
await Promise.all(pages.map((p) => p.waitForFunction(() => {
  const v = document.getElementById('live-screen');
  const b = v && v.buffered;
  // Playing, at the live edge, with the station's clock known.
  return v && v.readyState >= 2 && !v.paused && b.length && b.end(b.length - 1) - v.currentTime < 0.4 &&
    window.labLive && window.labLive.clock.at(0) !== null;
}, null, {timeout: 30000})));
await Promise.all(pages.map((p) => p.evaluate(() => {
  const v = document.getElementById('live-screen');
  const c = document.createElement('canvas');
  c.width = 8; c.height = 8;
  const g = c.getContext('2d', {willReadFrequently: true});
  window.flashSeen = [];
  let bright = false;
  const onFrame = (_, meta) => {
    g.drawImage(v, 0, 0, 8, 8);
    const d = g.getImageData(0, 0, 8, 8).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
    const lum = sum / (d.length / 4);
    if (!bright && lum > 170) {
      // Shown at expectedDisplayTime (performance clock) = this wall time.
      window.flashSeen.push({unix_ms: performance.timeOrigin + meta.expectedDisplayTime,
        frame_session_ms: meta.mediaTime * 1000,
        shown_session_ms: window.labLive.clock.at(meta.expectedDisplayTime)});
    }
    if (lum > 170) bright = true; else if (lum < 80) bright = false;
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
})));

// The station's page, flipped from black to white and back.
const station = await chromium.connectOverCDP(stationWs, {timeout: 10000});
const spage = station.contexts()[0].pages().find((p) => p.url().startsWith('http')) || station.contexts()[0].pages()[0];
// Each flip is also reported to the recorder as lab-setup check's page
// (hardware-setup/src/flash.html) reports a flash: a "flash" event stamped
// in the task after the frame that set the colour, with when it was asked
// for, and a 1 kHz beep 100 ms later, scheduled through Web Audio's output
// timestamps, as a "beep" event; the test measures both in the recording.
await spage.evaluate(async () => {
  await window.__labProbe.ready;
  const audio = new AudioContext();
  await audio.resume();
  for (let i = 0; i < 100 && !(audio.getOutputTimestamp().performanceTime > 0); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  window.labBeepAt = (targetPerfMs) => {
    const ts = audio.getOutputTimestamp();
    if (!(ts.performanceTime > 0)) return;
    const start = ts.contextTime + (targetPerfMs - ts.performanceTime) / 1000;
    const osc = new OscillatorNode(audio, {frequency: 1000});
    const gain = new GainNode(audio, {gain: 0.6});
    osc.connect(gain).connect(audio.destination);
    osc.start(start);
    osc.stop(start + 0.12);
    window.__labProbe.emit('beep', {at_ms: performance.timeOrigin + targetPerfMs});
  };
});
// A playback stream starting on the sandbox's sound server moves the
// recorded monitor's stamps about 18 ms at once; the recorder's audio clock
// takes such a step in full once two 2 s windows agree
// (recorder/src/audio_clock.rs, STEP_NS), so the first beep waits for that.
await sleep(6000);
const flips = [];
for (let i = 0; i < FLASHES; i++) {
  const at = await spage.evaluate((n) => new Promise((resolve) => {
    requestAnimationFrame(() => {
      const asked = performance.timeOrigin + performance.now();
      document.body.style.background = '#fff';
      setTimeout(() => {
        window.__labProbe.emit('flash', {n, colour: '#ffffff', asked_ms: asked});
        window.labBeepAt(performance.now() + 100);
      }, 0);
      // The frame with the white background is composited after two frames.
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.timeOrigin + performance.now())));
    });
  }), i);
  flips.push(at);
  await sleep(1200);
  await spage.evaluate(() => { document.body.style.background = '#000'; });
  await sleep(1000);
}
await sleep(1500);

const seen = [];
for (const p of pages) {
  const s = await p.evaluate(() => window.flashSeen);
  // For each flip, the first bright frame shown after it.
  seen.push(flips.map((f) => {
    const hit = s.find((x) => x.unix_ms >= f - 50);
    return hit ? hit.unix_ms - f : null;
  }));
}
const delays = await Promise.all(pages.map((p) => p.evaluate(() => {
  // The page reads no delay before its first clock message (null here).
  const s = window.flashSeen.filter((x) => x.shown_session_ms !== null);
  return s.map((x) => x.shown_session_ms - x.frame_session_ms);
})));
if (shots) await pages[0].screenshot({path: `${shots}/live-observer.png`});

// A note from the first observer, watched for on the others.
const text = `Участник ищет кнопку «Далее» ${Date.now() % 100000}`;
await pages[0].fill('#live-note', text);
// Typed when the page takes the Enter (its submit), not when Playwright starts pressing.
await pages[0].evaluate(() => document.getElementById('live-note-form').addEventListener('submit',
  () => { window.noteTyped = performance.timeOrigin + performance.now(); }, {capture: true, once: true}));
await pages[0].press('#live-note', 'Enter');
const typed = await pages[0].evaluate(() => window.noteTyped);
const arrived = await Promise.all(pages.map(async (p) => {
  await p.waitForFunction((t) => [...document.querySelectorAll('#live-events li')].some((li) => li.textContent.includes(t)), text, {timeout: 10000});
  return Date.now() - typed;
}));
if (shots) await pages[1 % pages.length].screenshot({path: `${shots}/live-note.png`});

// Live friction hints: the participant clicks a button that does nothing
// (a dead click, hinted once the probe's click effect says nothing changed),
// a disabled one (hinted) and one that works (no hint). Clicked through CDP input, as a person would.
await spage.click('#works');
await spage.click('#off', {force: true}); // disabled: the probe records the press
await spage.click('#dead');
const clicked = Date.now();
const hinted = await Promise.all(pages.map(async (p) => {
  try {
    await p.waitForFunction(() => ['Далее', 'Отправить'].every((w) =>
      [...document.querySelectorAll('#live-hints li')].some((li) => li.textContent.includes(w))),
    null, {timeout: 8000});
    return Date.now() - clicked;
  } catch { return null; }
}));
await sleep(1500); // the working button's effect has come by now
const hints = await Promise.all(pages.map((p) => p.evaluate(() =>
  [...document.querySelectorAll('#live-hints li')].map((li) => li.textContent))));
if (shots) await pages[0].screenshot({path: `${shots}/live-hints.png`});

console.log(JSON.stringify({flips, seen, delays, note: {typed_unix_ms: typed, text, arrived_ms: arrived},
  dead_click: {hinted_ms: hinted, hints}}));

await browser.close();
process.exit(0);
