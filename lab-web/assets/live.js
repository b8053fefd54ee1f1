// The observation room: /live lists the sessions being recorded now, /live/{id}
// watches one through lab-web's relay (GET /api/v1/live/{id}/watch, a
// WebSocket). The screen with sound and the camera come as fragmented MP4
// and play through Media Source Extensions at the live edge; events arrive as
// the station writes them; a note typed here goes to the station, lands in
// its events.jsonl on the session clock and comes back to every observer.
// Each track (screen, camera, first microphone) is its own MP4 stream whose
// timeline starts at 0; shifted by its first timestamp (`media_zero_ms`),
// every element's currentTime is session time, so sound follows the screen.

import {el, clear} from './dom.js';
import {t} from './i18n.js';
import {api} from './api.js';
import {runPage, setTitle} from './app.js';
import {fmtMs, fmtDate} from './format.js';

// How far behind the newest frame playback may fall before it catches up.
const MAX_BEHIND_S = 0.2;
const KEEP_S = 20;

/** One track: a <video> fed by a MediaSource, kept at the live edge. */
class TrackPlayer {
  constructor(video) { this.video = video; this.queue = []; this.sb = null; this.mime = null; }

  init(mime, bytes, zeroMs) {
    if (mime && mime !== this.mime) {
      this.mime = mime;
      this.queue = [];
      this.sb = null;
      const ms = new MediaSource();
      this.video.src = URL.createObjectURL(ms);
      ms.addEventListener('sourceopen', () => {
        try {
          this.sb = ms.addSourceBuffer(mime);
          this.sb.mode = 'segments';
          this.sb.timestampOffset = (zeroMs || 0) / 1000;
          this.sb.addEventListener('updateend', () => { this.chase(); this.pump(); });
          this.pump();
        } catch (e) { this.error = String(e); }
      }, {once: true});
    }
    this.push(bytes);
  }

  push(bytes) {
    if (this.queue.length > 200) this.queue = this.queue.filter((q) => q.init);
    this.queue.push(bytes);
    this.pump();
  }

  pump() {
    if (!this.sb || this.sb.updating || !this.queue.length) return;
    try { this.sb.appendBuffer(this.queue.shift()); } catch (e) { this.error = String(e); }
  }

  /**
   * Stays at the live edge: a little behind (0.2 s), it plays faster until
   * it is close again; further (0.6 s: a new viewer, a stall), it jumps.
   * Old frames go.
   */
  chase() {
    const v = this.video;
    const b = v.buffered;
    if (!b.length) return;
    const start = b.start(b.length - 1);
    const end = b.end(b.length - 1);
    const behind = end - v.currentTime;
    if (v.currentTime < start || behind > MAX_BEHIND_S * 3) v.currentTime = Math.max(start, end - 0.1);
    else v.playbackRate = behind > MAX_BEHIND_S ? 1.25 : behind < 0.1 ? 1 : v.playbackRate;
    if (v.paused) v.play().catch(() => {});
    if (!this.sb.updating && v.currentTime - b.start(0) > KEEP_S * 1.5) {
      try { this.sb.remove(0, v.currentTime - KEEP_S); } catch (_) { /* next time */ }
    }
  }
}

/** Session time now, from the station's clock messages (least delayed wins). */
class SessionClock {
  constructor() { this.offsets = []; }
  update(sessionMs) {
    this.offsets.push(sessionMs - performance.now());
    if (this.offsets.length > 10) this.offsets.shift();
  }
  /** Session ms at performance time `perfMs`, or null before the first clock. */
  at(perfMs) { return this.offsets.length ? Math.max(...this.offsets) + perfMs : null; }
}

function eventText(e) {
  const d = e.data || {};
  switch (e.kind) {
    case 'navigation': return t('live.ev.navigation', {url: d.title || d.url || ''});
    case 'click': return t('live.ev.click', {what: d.text || d.selector || ''});
    case 'validation_error': return t('live.ev.validation', {what: d.message || d.selector || ''});
    case 'marker':
      if (e.source === 'observer') return t('live.ev.note', {who: d.observer || '', text: d.text || ''});
      return t('live.ev.marker', {what: d.label || d.text || d.type || ''});
    case 'dialog': return t('live.ev.dialog', {what: d.title || ''});
    case 'lsl_marker': return t('live.ev.sensor', {what: d.marker || ''});
    default: return e.kind.startsWith('system.') ? t('live.ev.system', {what: e.kind.slice(7)}) : null;
  }
}

/** Tags clicked into to type or choose: they change nothing by design. */
const FIELD_TAGS = new Set(['input', 'textarea', 'select', 'option', 'label']);
const CONTROL_TAGS = new Set(['a', 'button', 'summary']);

/**
 * Whether a click was meant to do something: a control (a link, a button, a
 * disclosure, an ARIA role) or what the probe saw make it look clickable (a
 * click handler, a tab stop, a card, a hand pointer). The clearest of the
 * analyzer's dead-click rules (analyzer/src/friction/dead_click.rs); its
 * button-like-text rule waits for the analysis.
 */
export function invitesClick(d) {
  const tag = String(d.tag || '').toLowerCase();
  if (FIELD_TAGS.has(tag)) return false;
  const given = (v) => typeof v === 'string' && v.trim() !== '';
  if (given(d.href) || CONTROL_TAGS.has(tag) || given(d.role)) return true;
  const a = d.affordance && typeof d.affordance === 'object' ? d.affordance : {};
  return ['handler', 'tabindex', 'card', 'cursor'].some((k) => a[k] !== undefined && a[k] !== null && a[k] !== false);
}

/**
 * Friction that can be seen as it happens: rage clicks, dead clicks (the
 * probe's `click_effect` a second after the click: nothing changed), clicks
 * on disabled controls, validation loops, long idle.
 */
export class Hints {
  constructor(onHint) {
    this.onHint = onHint; this.clicks = []; this.errors = new Map(); this.lastBrowser = null; this.idleSaid = false;
    this.pending = new Map(); // click_id -> the click's data, until its effect comes
    this.lastDead = null; // {sel, t} of the last dead-click hint
  }
  event(e) {
    if (e.source !== 'browser') return;
    const d = e.data || {};
    if (e.kind === 'click_effect') { this.effect(d); return; }
    this.lastBrowser = e.t_ns; this.idleSaid = false;
    if (e.kind === 'click') {
      this.clicks = this.clicks.filter((c) => e.t_ns - c.t < 1e9).concat({t: e.t_ns, x: d.x, y: d.y, sel: d.selector});
      const near = this.clicks.filter((c) => c.sel === d.selector || Math.hypot(c.x - d.x, c.y - d.y) < 30);
      if (near.length >= 3) { this.onHint(e.t_ns, t('live.hint.rage', {what: d.text || d.selector || ''})); this.clicks = []; }
      if (d.click_id !== undefined && d.click_id !== null) {
        this.pending.set(d.click_id, {t: e.t_ns, d});
        if (this.pending.size > 200) this.pending.delete(this.pending.keys().next().value);
      }
    } else if (e.kind === 'validation_error') {
      const key = d.selector || '';
      const ts = (this.errors.get(key) || []).filter((x) => e.t_ns - x < 60e9).concat(e.t_ns);
      this.errors.set(key, ts);
      if (ts.length === 3) this.onHint(e.t_ns, t('live.hint.loop', {what: d.message || key}));
    }
  }
  /** A click's effect: a hint when a control was clicked and nothing changed. */
  effect(d) {
    const click = this.pending.get(d.click_id);
    if (!click) return;
    this.pending.delete(d.click_id);
    if (d.url_changed === true || d.page_unloaded === true) return;
    const c = click.d;
    const what = c.text || c.selector || '';
    let key = null;
    if (c.disabled === true) key = 'live.hint.disabled';
    else if (Number(d.mutations || 0) === 0 && invitesClick(c)) key = 'live.hint.dead';
    if (!key) return;
    // Repeats on one element (the rage hint speaks for a burst) make one hint.
    const last = this.lastDead;
    this.lastDead = {sel: c.selector, t: click.t};
    if (last && last.sel === c.selector && click.t - last.t <= 2e9) return;
    this.onHint(click.t, t(key, {what}));
  }
  tick(nowNs) {
    if (this.lastBrowser !== null && !this.idleSaid && nowNs - this.lastBrowser > 30e9) {
      this.idleSaid = true;
      this.onHint(nowNs, t('live.hint.idle'));
    }
  }
}

async function listPage(main) {
  setTitle(t('live.title'));
  const body = el('div', {id: 'live-list'});
  main.append(el('h1', null, t('live.title')), el('p', {class: 'muted'}, t('live.lead')), body);
  const load = async () => {
    const r = await api('GET', '/live');
    clear(body);
    if (!r.sessions.length) { body.append(el('p', {class: 'empty'}, t('live.none'))); return; }
    body.append(el('ul', {class: 'live-sessions'}, r.sessions.map((s) => el('li', null,
      el('a', {href: `/live/${encodeURIComponent(s.session_id)}`, class: 'live-link'}, s.participant || s.session_id),
      ' · ', s.station, s.life_situation ? ` · ${s.life_situation}` : '',
      s.session_zero_unix_ms ? ` · ${t('live.since', {time: fmtDate(s.session_zero_unix_ms)})}` : '',
      ` · ${t('live.observers', {n: s.observers})}`,
      s.connected ? null : el('span', {class: 'badge badge-warn'}, ' ', t('live.lost'))))));
  };
  await load();
  setInterval(() => load().catch(() => {}), 5000);
}

function watchPage(main, id) {
  setTitle(t('live.watch_title'));
  const screen = el('video', {id: 'live-screen', class: 'live-screen', muted: true, autoplay: true, playsinline: true});
  screen.muted = true;
  const camera = el('video', {id: 'live-camera', class: 'live-camera', muted: true, autoplay: true, playsinline: true});
  camera.muted = true;
  const voice = el('audio', {id: 'live-audio', muted: true, autoplay: true});
  voice.muted = true;
  const status = el('span', {id: 'live-status', class: 'live-status'}, t('live.connecting'));
  const delay = el('span', {id: 'live-delay', class: 'muted'});
  const stepNow = el('span', {id: 'live-step', class: 'live-step'});
  const sound = el('button', {type: 'button', id: 'live-sound', class: 'btn btn-small', onclick: () => {
    voice.muted = !voice.muted;
    if (!voice.muted) voice.play().catch(() => {});
    sound.textContent = voice.muted ? t('live.sound_on') : t('live.sound_off');
  }}, t('live.sound_on'));
  const feed = el('ol', {id: 'live-events', class: 'live-events', reversed: true});
  const hintsBox = el('ol', {id: 'live-hints', class: 'live-hints', reversed: true});
  const noteInput = el('input', {id: 'live-note', maxlength: 2000, placeholder: t('live.note_placeholder'), autocomplete: 'off'});
  const noteForm = el('form', {id: 'live-note-form', class: 'live-note-form'}, noteInput,
    el('button', {type: 'submit', class: 'btn btn-primary'}, t('live.note_send')));
  const head = el('h1', null, t('live.watch_title'));
  main.append(head, el('div', {class: 'live-bar'}, status, ' ', stepNow, ' ', delay, ' ', sound),
    el('div', {class: 'live-layout'},
      el('div', {class: 'live-stage'}, screen, camera, voice),
      el('div', {class: 'live-side'},
        noteForm,
        el('h2', null, t('live.hints')), hintsBox,
        el('h2', null, t('live.events')), feed)));

  const clock = new SessionClock();
  const elements = {screen, camera, mic0: voice};
  let players = [];
  let tracks = [];
  let journeySteps = 0;
  const pendingInit = [];
  const addRow = (list, tNs, text, cls) => {
    list.prepend(el('li', {class: cls}, el('span', {class: 'live-time'}, fmtMs(tNs / 1e6)), ' ', text));
    while (list.children.length > 200) list.lastChild.remove();
  };
  const hints = new Hints((tNs, text) => addRow(hintsBox, tNs, text, 'live-hint'));
  // For tests and the delay read-out: session time of the frame on screen.
  window.labLive = {clock, screen, camera, voice, events: []};

  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/live/${encodeURIComponent(id)}/watch`;
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (m) => {
    if (typeof m.data !== 'string') {
      const b = new Uint8Array(m.data);
      const track = b[0], kind = b[1], bytes = b.subarray(2);
      const p = players[track];
      if (!p) return;
      if (kind === 0) {
        const tr = tracks[track];
        if (!tr || !tr.mime) { pendingInit[track] = bytes; return; }
        p.init(tr.mime, bytes, tr.media_zero_ms);
      } else p.push(bytes);
      return;
    }
    const msg = JSON.parse(m.data);
    switch (msg.type) {
      case 'hello':
        tracks = msg.tracks || [];
        // A track keeps its player (and element) across hellos.
        players = tracks.map((tr, i) => players[i] && players[i].video === elements[tr.id] ? players[i]
          : (elements[tr.id] ? new TrackPlayer(elements[tr.id]) : null));
        head.textContent = t('live.watch_head', {participant: msg.participant || '', station: msg.station || ''});
        journeySteps = msg.journey && msg.journey.steps ? msg.journey.steps.length : 0;
        status.textContent = t('live.on_air');
        status.className = 'live-status on-air';
        tracks.forEach((tr, i) => {
          if (tr.mime && pendingInit[i] && players[i]) { players[i].init(tr.mime, pendingInit[i], tr.media_zero_ms); pendingInit[i] = null; }
        });
        break;
      case 'clock': clock.update(msg.session_ms); hints.tick(msg.session_ms * 1e6); break;
      case 'step':
        // The journey step entered (the analyzer's rules, applied by the station).
        stepNow.textContent = msg.step ? t('live.step_now', {title: msg.title || msg.step, n: (msg.index || 0) + 1, of: journeySteps})
          : t('live.step_none');
        addRow(feed, msg.t_ns || 0, msg.step ? t('live.ev.step', {title: msg.title || msg.step}) : t('live.step_none'), 'live-ev live-ev-step');
        break;
      case 'event': {
        const e = msg.event;
        window.labLive.events.push(e);
        hints.event(e);
        const text = eventText(e);
        if (text) addRow(feed, e.t_ns, text, `live-ev live-ev-${e.source}`);
        break;
      }
      case 'station_lost': status.textContent = t('live.lost'); status.className = 'live-status lost'; break;
      case 'end': status.textContent = t('live.ended'); status.className = 'live-status ended'; break;
      case 'note_refused': addRow(hintsBox, (clock.at(performance.now()) || 0) * 1e6, t('live.note_refused', {why: msg.reason || ''}), 'live-error'); break;
      default: break;
    }
  };
  ws.onclose = () => { if (!status.classList.contains('ended')) { status.textContent = t('live.disconnected'); status.className = 'live-status lost'; } };

  // The delay read-out (a frame's session time against session time when it
  // is shown), and the sound kept with the screen.
  const onFrame = (_, meta) => {
    const now = clock.at(meta.expectedDisplayTime);
    if (now !== null) delay.textContent = t('live.delay', {s: ((now - meta.mediaTime * 1000) / 1000).toFixed(1)});
    if (!voice.muted && Math.abs(voice.currentTime - screen.currentTime) > 0.2) {
      const b = voice.buffered;
      if (b.length && screen.currentTime >= b.start(0) && screen.currentTime <= b.end(b.length - 1)) voice.currentTime = screen.currentTime;
    }
    screen.requestVideoFrameCallback(onFrame);
  };
  if (screen.requestVideoFrameCallback) screen.requestVideoFrameCallback(onFrame);

  let n = 0;
  noteForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = noteInput.value.trim();
    if (!text || ws.readyState !== WebSocket.OPEN) return;
    // When it was typed, and what was on screen then, in session time.
    const typed = clock.at(performance.now());
    const seen = screen.currentTime * 1000;
    ws.send(JSON.stringify({type: 'note', id: `${Date.now().toString(36)}-${(n++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
      text, typed_ms: typed, seen_ms: seen}));
    noteInput.value = '';
  });
}

runPage(async ({id, main}) => {
  if (id) watchPage(main, id);
  else await listPage(main);
});
