// The session page's player: the screen rendition with the camera following
// it (picture-in-picture, side by side or hidden), the transport controls and
// a virtual clock when there is no screen video (viewers, withdrawn, not
// rendered yet), so the transcript, timeline and shortcuts still work.
//
// Time is session milliseconds: the screen rendition's currentTime 0 is
// session time `media.screen_start_ms`, so
// session_ms = screen_start_ms + currentTime * 1000 (the camera has its own
// `camera_start_ms`, defaulting to the screen's).

import {el, add, safeUrl} from './dom.js';
import {t, lang} from './i18n.js';
import {fmtMs} from './format.js';
import {toast, select} from './widgets.js';

/** Playback rates of the speed menu and the J / L keys. */
export const SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];

/**
 * Builds the player into root. `unavailable` says why there is no video when
 * media.screen is missing; `onNewTag` (taggers only) backs the "+ T" button.
 */
export function createPlayer(root, {media, durationMs, unavailable, onNewTag}) {
  const screenStart = Number(media.screen_start_ms) || 0;
  const cameraStart = media.camera_start_ms != null ? Number(media.camera_start_ms) : screenStart;
  let duration = durationMs;
  const tickers = [];
  const seekers = [];
  const durationers = [];
  const stage = el('div', {class: 'player', id: 'player'});
  let screen = null, camera = null, camWrap = null;

  if (media.screen) {
    screen = el('video', {id: 'screen', preload: 'auto', playsinline: true, dataset: {startMs: String(screenStart)}});
    screen.src = safeUrl(media.screen);
    if (media.thumbnails && media.thumbnails.length) screen.poster = safeUrl(media.thumbnails[0].url);
    add(stage, screen);
  } else {
    add(stage, el('div', {class: 'media-unavailable', id: 'media-unavailable'}, t('player.unavailable'),
      el('div', {class: 'media-why'}, unavailable)));
  }
  if (media.camera && screen) {
    camera = el('video', {id: 'camera', preload: 'auto', playsinline: true, muted: true, dataset: {startMs: String(cameraStart)}});
    camera.muted = true; // audio is in both renditions; the screen's plays
    camera.src = safeUrl(media.camera);
    camWrap = el('div', {class: 'camera-wrap', title: t('player.camera_drag')}, camera);
    add(stage, camWrap);
    makeDraggable(camWrap, stage);
    const saved = localStorage.getItem('lab.cameraLayout');
    if (saved === 'side') stage.classList.add('layout-side');
    if (saved === 'hidden') stage.classList.add('camera-hidden');
  } else if (media.screen === null && media.camera === null) {
    // nothing
  }

  // A virtual clock when there is no screen video (viewers, withdrawn, not rendered yet),
  // so the transcript, timeline and shortcuts still work.
  const virt = {t: 0, playing: false, since: 0, rate: 1};
  const time = () => {
    if (screen) return screenStart + screen.currentTime * 1000;
    return virt.playing ? Math.min(duration || Infinity, virt.t + (performance.now() - virt.since) * virt.rate) : virt.t;
  };
  const paused = () => screen ? screen.paused : !virt.playing;
  function seek(ms) {
    const max = duration || (screen && isFinite(screen.duration) ? screenStart + screen.duration * 1000 : Infinity);
    ms = Math.max(0, Math.min(ms, max));
    if (screen) {
      screen.currentTime = Math.max(0, (ms - screenStart) / 1000);
    } else {
      virt.t = ms; virt.since = performance.now();
    }
    tick();
    for (const f of seekers) f(ms);
  }
  function play() {
    if (screen) { const p = screen.play(); if (p) p.catch((e) => { if (e.name !== 'AbortError') toast(t('player.play_failed')); }); } else { virt.since = performance.now(); virt.playing = true; loop(); }
    updateButtons();
  }
  function pause() {
    if (screen) screen.pause(); else { virt.t = time(); virt.playing = false; }
    updateButtons(); tick();
  }
  const toggle = () => paused() ? play() : pause();
  function setRate(r) {
    if (screen) screen.playbackRate = r; else { virt.t = time(); virt.since = performance.now(); virt.rate = r; }
    speedSel.value = String(r);
    syncCamera(false);
  }
  const rate = () => screen ? screen.playbackRate : virt.rate;

  // --- camera follows screen ---
  function syncCamera(force) {
    if (!camera || !screen) return;
    const want = (time() - cameraStart) / 1000;
    const camDur = isFinite(camera.duration) ? camera.duration : Infinity;
    if (want < 0 || want > camDur) { if (!camera.paused) camera.pause(); return; }
    if (camera.playbackRate !== screen.playbackRate) camera.playbackRate = screen.playbackRate;
    if (!camera.seeking && (force || Math.abs(camera.currentTime - want) > 0.15)) camera.currentTime = want;
    if (screen.paused && !camera.paused) camera.pause();
    if (!screen.paused && camera.paused) camera.play().catch(() => {});
  }
  if (screen) {
    screen.addEventListener('play', () => { syncCamera(true); updateButtons(); loop(); });
    screen.addEventListener('pause', () => { syncCamera(true); updateButtons(); tick(); });
    screen.addEventListener('seeked', () => { syncCamera(true); tick(); });
    screen.addEventListener('seeking', () => tick());
    screen.addEventListener('ratechange', () => syncCamera(false));
    screen.addEventListener('timeupdate', () => { if (screen.paused) tick(); });
    screen.addEventListener('loadedmetadata', () => {
      if (!duration && isFinite(screen.duration)) setDuration(screenStart + screen.duration * 1000);
      tick();
    });
    screen.addEventListener('error', () => {
      add(stage, el('div', {class: 'media-error'}, t('player.error')));
    });
    if (camera) camera.addEventListener('loadedmetadata', () => syncCamera(true));
  }

  // --- controls ---
  const playBtn = el('button', {type: 'button', class: 'btn btn-primary play', id: 'play', 'aria-label': t('player.play'), onclick: () => toggle()}, '▶');
  const back5 = el('button', {type: 'button', class: 'btn btn-icon', title: t('player.back5'), onclick: () => seek(time() - 5000)}, '«5');
  const fwd5 = el('button', {type: 'button', class: 'btn btn-icon', title: t('player.fwd5'), onclick: () => seek(time() + 5000)}, '5»');
  const frameBack = el('button', {type: 'button', class: 'btn btn-icon', id: 'frame-back', title: t('player.frame_back'), onclick: () => frame(-1)}, '◂|');
  const frameFwd = el('button', {type: 'button', class: 'btn btn-icon', id: 'frame-fwd', title: t('player.frame_fwd'), onclick: () => frame(1)}, '|▸');
  const seekBar = el('input', {type: 'range', id: 'seek', class: 'seek', min: '0', max: String(duration || 0), step: '100', value: '0', 'aria-label': t('player.seek')});
  let seeking = false;
  seekBar.addEventListener('input', () => { seeking = true; seek(Number(seekBar.value)); });
  seekBar.addEventListener('change', () => { seeking = false; seekBar.blur(); });
  const timeLabel = el('span', {class: 'time', id: 'current-time'}, '00:00.0');
  const speedSel = select('speed', SPEEDS.map((r) => [String(r), `${String(r).replace('.', lang() === 'ru' ? ',' : '.')}×`]), '1',
    {id: 'speed', 'aria-label': t('player.speed'), title: t('player.speed')});
  // Give the keyboard back to the shortcuts once a value is picked.
  speedSel.addEventListener('change', () => { setRate(Number(speedSel.value)); speedSel.blur(); });
  const marks = el('span', {class: 'marks', id: 'marks'});
  const camBtn = camera ? el('button', {type: 'button', class: 'btn btn-small btn-ghost', id: 'camera-layout', title: t('player.camera_layout'), onclick: cycleCamera}, t('player.camera')) : null;
  const tagBtn = onNewTag ? el('button', {type: 'button', class: 'btn btn-small', id: 'new-tag', title: t('tags.new') + ' (T)', onclick: () => onNewTag()}, '+ T') : null;

  const controls = el('div', {class: 'controls', id: 'controls'},
    playBtn, back5, frameBack, frameFwd, fwd5, timeLabel, seekBar, speedSel, marks, camBtn, tagBtn);
  add(root, stage, controls);

  function frame(dir) { pause(); seek(time() + dir * (1000 / 30)); }
  function updateButtons() {
    const p = paused();
    playBtn.textContent = p ? '▶' : '❚❚';
    playBtn.setAttribute('aria-label', p ? t('player.play') : t('player.pause'));
  }
  function cycleCamera() {
    const side = stage.classList.contains('layout-side'), hidden = stage.classList.contains('camera-hidden');
    stage.classList.remove('layout-side', 'camera-hidden');
    let next = 'pip';
    if (!side && !hidden) { stage.classList.add('layout-side'); next = 'side'; camWrap.style.left = camWrap.style.top = ''; }
    else if (side) { stage.classList.add('camera-hidden'); next = 'hidden'; }
    localStorage.setItem('lab.cameraLayout', next);
  }
  function setDuration(ms) { duration = ms; seekBar.max = String(ms); tick(); for (const f of durationers) f(ms); }

  let looping = false;
  function loop() {
    if (looping) return;
    looping = true;
    let lastSync = 0;
    const step = (ts) => {
      tick();
      if (ts - lastSync > 500) { syncCamera(false); lastSync = ts; }
      if (!paused()) requestAnimationFrame(step); else looping = false;
    };
    requestAnimationFrame(step);
  }
  function tick() {
    const now = time();
    timeLabel.textContent = `${fmtMs(now)} / ${fmtMs(duration)}`;
    if (!seeking) seekBar.value = String(Math.round(now));
    for (const f of tickers) f(now);
  }
  function onTick(f) { tickers.push(f); f(time()); }
  function onSeek(f) { seekers.push(f); }
  function onDuration(f) { durationers.push(f); }
  updateButtons();

  /** Runs fn once the screen's metadata is loaded (a seek before it may be lost), at once without a video. */
  function ready(fn) {
    if (!screen || screen.readyState >= 1) { fn(); return; }
    screen.addEventListener('loadedmetadata', () => fn(), {once: true});
  }

  return {time, seek, play, pause, toggle, paused, setRate, rate, onTick, onSeek, onDuration, setDuration, marks, hasVideo: !!screen,
    duration: () => duration, tick, ready};
}

/** Why a session shows no video: withdrawn, hidden from the role, missing or not rendered yet. */
export function unavailableReason(detail, canRaw) {
  return detail.withdrawn ? t('player.why_withdrawn') : !canRaw ? t('player.why_role')
    : (detail.analysis && detail.analysis.status === 'done') ? t('player.why_missing') : t('player.why_not_rendered');
}

function makeDraggable(box, container) {
  let start = null;
  box.addEventListener('pointerdown', (e) => {
    if (container.classList.contains('layout-side')) return;
    start = {x: e.clientX, y: e.clientY, left: box.offsetLeft, top: box.offsetTop};
    box.setPointerCapture(e.pointerId);
    box.classList.add('dragging');
  });
  box.addEventListener('pointermove', (e) => {
    if (!start) return;
    const maxL = container.clientWidth - box.offsetWidth, maxT = container.clientHeight - box.offsetHeight;
    const left = Math.max(0, Math.min(maxL, start.left + e.clientX - start.x));
    const top = Math.max(0, Math.min(maxT, start.top + e.clientY - start.y));
    box.style.left = left + 'px'; box.style.top = top + 'px'; box.style.right = 'auto'; box.style.bottom = 'auto';
  });
  const end = () => { start = null; box.classList.remove('dragging'); };
  box.addEventListener('pointerup', end);
  box.addEventListener('pointercancel', end);
}
