// The session timeline: a canvas of lanes under a time axis, with wheel
// zoom, drag to pan, click to seek or to pick a candidate or tag, hover
// tooltips (with the nearest screen thumbnail), the playhead following
// playback, the I/O mark selection, and every event loaded page by page
// beyond the server's per-request cap. The lanes are drawn by
// session-timeline-lanes.js.

import {el, add, clear} from './dom.js';
import {t} from './i18n.js';
import {fmtMs, fmtDuration, fmtNumber} from './format.js';
import {api} from './api.js';
import {detectorLabel, categoryLabel} from './labels.js';
import {layoutLanes, createPainter, sortEvents, lowerBound} from './session-timeline-lanes.js';

/** page: the session model; data: GET /sessions/{id}/timeline (or {error}); sensorLanes: GET …/sensors' lanes. */
export function createTimeline(page, root, data, sensorLanes = []) {
  const {state, detail, sid} = page;
  const ok = data && !data.error;
  const layout = layoutLanes(ok ? (data.speech || []) : [], sensorLanes);
  const {lanes, AXIS, HEIGHT} = layout;
  const paint = createPainter(page, layout);

  let events = ok ? sortEvents(data.events || []) : [];
  const speech = ok ? (data.speech || []).slice().sort((a, b) => a.start_ms - b.start_ms) : [];
  const markers = ok ? (data.markers || []).slice().sort((a, b) => a.t_ms - b.t_ms) : [];
  const thumbs = ((detail.media && detail.media.thumbnails) || []).slice().sort((a, b) => a.t_ms - b.t_ms);
  let duration = Math.max(1000, state.durationMs || (ok && data.duration_ms) || 1000);
  const view = {start: 0, end: duration};

  // DOM
  const zoomOut = el('button', {type: 'button', class: 'btn btn-icon', title: t('timeline.zoom_out'), onclick: () => zoom(1.6, null)}, '−');
  const zoomIn = el('button', {type: 'button', class: 'btn btn-icon', title: t('timeline.zoom_in'), onclick: () => zoom(1 / 1.6, null)}, '+');
  const fit = el('button', {type: 'button', class: 'btn btn-small btn-ghost', title: t('timeline.fit'), onclick: () => setView(0, duration)}, t('timeline.fit'));
  const rangeLabel = el('span', {class: 'muted small tl-range'});
  const status = el('span', {class: 'muted small tl-status'});
  const labels = el('div', {class: 'tl-labels', style: {height: HEIGHT + 'px'}},
    el('div', {class: 'tl-label tl-axis-label', style: {height: AXIS + 'px'}}),
    lanes.map((l) => el('div', {class: 'tl-label', style: {height: l.h + 'px'}, title: l.label}, l.label)));
  const canvas = el('canvas', {class: 'tl-canvas'});
  const playhead = el('div', {class: 'tl-playhead'});
  const selection = el('div', {class: 'tl-selection', hidden: true});
  const tip = el('div', {class: 'tl-tip', hidden: true, role: 'tooltip'});
  const area = el('div', {class: 'tl-area', id: 'timeline', style: {height: HEIGHT + 'px'}, tabindex: '-1'}, canvas, selection, playhead, tip);
  add(root, 
    el('div', {class: 'panel-head'}, el('h2', null, t('timeline.title')), rangeLabel, status,
      el('span', {class: 'spacer'}), el('span', {class: 'muted small'}, t('timeline.hint')), zoomOut, zoomIn, fit),
    el('div', {class: 'tl-body'}, labels, area));
  if (!ok) status.textContent = data && data.error && data.error.status === 403 ? t('common.no_access') : t('timeline.none');

  let width = 0;
  const ctx = canvas.getContext('2d');
  const x = (ms) => (ms - view.start) / (view.end - view.start) * width;
  const tAt = (px) => view.start + px / width * (view.end - view.start);

  function resize() {
    width = Math.max(50, area.clientWidth);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr); canvas.height = Math.round(HEIGHT * dpr);
    canvas.style.width = width + 'px'; canvas.style.height = HEIGHT + 'px';
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }
  new ResizeObserver(resize).observe(area);

  let drawQueued = false;
  function queueDraw() { if (!drawQueued) { drawQueued = true; requestAnimationFrame(() => { drawQueued = false; draw(); }); } }
  function draw() {
    if (!width) return;
    paint({ctx, width, view, events, speech, markers, selected, sensors});
    loadSensors();
    rangeLabel.textContent = `${fmtMs(view.start)} – ${fmtMs(view.end)}`;
    placeSelection();
    setPlayhead(lastNow, false);
  }

  // --- sensor lanes: min/max per pixel column, fetched for each new view ---
  const sensors = new Map();
  let sensorKey = '', sensorTimer = null;
  function loadSensors() {
    if (!sensorLanes.length) return;
    const from = Math.floor(view.start), to = Math.ceil(view.end), cols = Math.min(4000, Math.round(width));
    const key = `${from}:${to}:${cols}`;
    if (key === sensorKey) return;
    sensorKey = key;
    clearTimeout(sensorTimer);
    sensorTimer = setTimeout(async () => {
      const got = await Promise.all(sensorLanes.map((l) =>
        api('GET', `/sessions/${sid}/sensors/${l.lane}?from_ms=${from}&to_ms=${to}&columns=${cols}`, null, {quiet: [400, 403, 404]}).catch(() => null)));
      if (key !== sensorKey) return;
      got.forEach((s, i) => { if (s && !s.error) sensors.set(sensorLanes[i].lane, s); });
      queueDraw();
    }, 60);
  }

  // --- playhead, selection ---
  let lastNow = 0;
  function setPlayhead(now, follow) {
    // Follow a playing video page by page, unless the user has panned the playhead out of view.
    const wasVisible = lastNow >= view.start && lastNow <= view.end;
    lastNow = now;
    if (follow && wasVisible && (now > view.end || now < view.start)) {
      const span = view.end - view.start;
      setView(now - span * 0.1, now + span * 0.9);
      return;
    }
    const px = x(now);
    playhead.hidden = px < 0 || px > width;
    playhead.style.transform = `translateX(${px}px)`;
  }
  function placeSelection() {
    const a = state.markIn, b = state.markOut;
    if (a == null && b == null) { selection.hidden = true; return; }
    const s = a ?? b, e = b ?? a;
    const x0 = x(Math.min(s, e)), x1 = x(Math.max(s, e));
    selection.hidden = false;
    selection.style.left = x0 + 'px';
    selection.style.width = Math.max(2, x1 - x0) + 'px';
  }

  // --- view ---
  function setView(s, e) {
    const span = Math.max(500, Math.min(duration, e - s));
    s = Math.max(0, Math.min(s, duration - span));
    view.start = s; view.end = s + span;
    queueDraw();
  }
  function zoom(factor, atMs) {
    const c = atMs ?? (lastNow >= view.start && lastNow <= view.end ? lastNow : (view.start + view.end) / 2);
    const s = c - (c - view.start) * factor, e = c + (view.end - c) * factor;
    setView(s, e);
  }

  // --- input: wheel zoom, drag pan, click seek, hover tooltip ---
  area.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = area.getBoundingClientRect();
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY) || e.shiftKey) {
      const d = (e.deltaX || e.deltaY) / width * (view.end - view.start);
      setView(view.start + d, view.end + d);
    } else {
      zoom(Math.exp(e.deltaY * 0.0015), tAt(e.clientX - r.left));
    }
  }, {passive: false});

  let drag = null;
  area.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    drag = {x: e.clientX, start: view.start, end: view.end, moved: false};
    area.setPointerCapture(e.pointerId);
  });
  area.addEventListener('pointermove', (e) => {
    const r = area.getBoundingClientRect();
    if (drag) {
      const dx = e.clientX - drag.x;
      if (Math.abs(dx) > 3) drag.moved = true;
      if (drag.moved) {
        const d = -dx / width * (drag.end - drag.start);
        setView(drag.start + d, drag.end + d);
        tip.hidden = true;
        area.classList.add('panning');
        return;
      }
    }
    hover(e.clientX - r.left, e.clientY - r.top);
  });
  area.addEventListener('pointerup', (e) => {
    const d = drag; drag = null; area.classList.remove('panning');
    if (!d || d.moved) return;
    const r = area.getBoundingClientRect();
    const hit = hitTest(e.clientX - r.left, e.clientY - r.top);
    if (hit && hit.lane === 'candidates') { selectItem(hit); page.candidates.select(hit.item.id, true); }
    else if (hit && hit.lane === 'tags') { selectItem(hit); page.tags.select(hit.item.id, true); }
    else page.player.seek(tAt(e.clientX - r.left));
  });
  area.addEventListener('pointerleave', () => { tip.hidden = true; });

  function laneAt(py) { return lanes.find((l) => py >= l.y && py < l.y + l.h) || null; }
  function hitTest(px, py) {
    const l = laneAt(py);
    if (!l) return null;
    const tm = tAt(px), tol = 4 / width * (view.end - view.start);
    // Bars are drawn at least 4 px wide; hit them as drawn.
    const inRange = (it) => it.start_ms - tol / 2 <= tm && tm <= Math.max(it.end_ms, it.start_ms + tol) + tol / 2;
    if (l.key === 'candidates') { const it = state.candidates.find(inRange); return it ? {lane: 'candidates', item: it} : null; }
    if (l.key === 'tags') { const it = state.tags.find(inRange); return it ? {lane: 'tags', item: it} : null; }
    if (l.key === 'steps') { const it = state.steps.find((s) => s.start_ms <= tm && tm <= s.end_ms); return it ? {lane: 'steps', item: it} : null; }
    if (l.key === 'speech') { const it = speech.find((s) => (!l.speaker || s.speaker === l.speaker) && s.start_ms - tol <= tm && tm <= s.end_ms + tol); return it ? {lane: 'speech', item: it} : null; }
    if (l.key === 'markers') { const i = lowerBound(markers, tm - 3 * tol, (m) => m.t_ms); const m = markers[i]; return m && m.t_ms <= tm + 3 * tol ? {lane: 'markers', item: m} : null; }
    if (l.key === 'events') {
      const i0 = lowerBound(events, tm - tol, (e) => e.t_ms), i1 = lowerBound(events, tm + tol, (e) => e.t_ms);
      return i1 > i0 ? {lane: 'events', items: events.slice(i0, Math.min(i1, i0 + 200)), count: i1 - i0} : null;
    }
    return null;
  }
  function hover(px, py) {
    const hit = hitTest(px, py);
    const tm = tAt(px);
    const lines = [];
    let thumb = null;
    if (!hit) {
      if (py < AXIS || laneAt(py)?.key === 'steps') thumb = nearestThumb(tm);
      lines.push([fmtMs(tm)]);
    } else if (hit.lane === 'events') {
      for (const e of hit.items.slice(0, 6)) lines.push([fmtMs(e.t_ms) + ' ', el('strong', null, e.kind), e.summary ? ' — ' + e.summary : '']);
      if (hit.count > 6) lines.push([t('timeline.more_events', {n: hit.count - 6})]);
    } else if (hit.lane === 'candidates') {
      const c = hit.item;
      lines.push([el('strong', null, detectorLabel(c.detector)), ' ', fmtMs(c.start_ms), '–', fmtMs(c.end_ms)], [t('candidate.status_' + (c.status || 'open'))]);
      if (c.note) lines.push([c.note]);
    } else if (hit.lane === 'tags') {
      const g = hit.item;
      lines.push([el('strong', null, categoryLabel(g.category, page.categories)), ' · ', t('severity.' + g.severity)], [fmtMs(g.start_ms) + '–' + fmtMs(g.end_ms)]);
      if (g.note) lines.push([g.note]);
    } else if (hit.lane === 'steps') {
      const s = hit.item;
      thumb = nearestThumb(tm);
      lines.push([el('strong', null, s.title || page.stepTitle(s.step))], [fmtMs(s.start_ms) + '–' + fmtMs(s.end_ms) + ' (' + fmtDuration(s.end_ms - s.start_ms) + ')']);
    } else if (hit.lane === 'speech') {
      lines.push([t('speaker.' + hit.item.speaker), ' ', fmtMs(hit.item.start_ms) + '–' + fmtMs(hit.item.end_ms)]);
    } else if (hit.lane === 'markers') {
      lines.push([fmtMs(hit.item.t_ms) + ' ', el('strong', null, hit.item.label || t('lane.markers'))]);
    }
    clear(tip);
    if (thumb) add(tip, el('img', {src: thumb.url, alt: '', class: 'tl-thumb'}));
    for (const parts of lines) add(tip, el('div', null, parts));
    tip.hidden = false;
    const w = tip.offsetWidth;
    tip.style.left = Math.max(0, Math.min(width - w, px + 12)) + 'px';
    tip.style.top = Math.min(py + 14, HEIGHT - 10) + 'px';
  }
  function nearestThumb(tm) {
    if (!thumbs.length) return null;
    const i = lowerBound(thumbs, tm, (th) => th.t_ms);
    const a = thumbs[Math.max(0, i - 1)], b = thumbs[Math.min(thumbs.length - 1, i)];
    return Math.abs(a.t_ms - tm) <= Math.abs(b.t_ms - tm) ? a : b;
  }

  let selected = null;
  function selectItem(hit) { selected = hit; queueDraw(); }

  // --- events beyond the server's 5000-per-request cap: page through by time ---
  // Every event is loaded up front (50 000 take ~1 MB); drawing bins them per pixel.
  async function loadAllEvents() {
    if (!ok || !data.truncated) return;
    status.textContent = t('timeline.loading');
    const seen = new Set(events.map((e) => e.seq));
    let from = events.length ? events[events.length - 1].t_ms : 0;
    try {
      for (let round = 0; round < 40; round++) {
        const r = await api('GET', `/sessions/${sid}/timeline?from_ms=${Math.floor(from)}&to_ms=${Math.ceil(duration + 60000)}`, null, {quiet: true});
        const fresh = (r.events || []).filter((e) => !seen.has(e.seq));
        for (const e of fresh) seen.add(e.seq);
        events = events.concat(sortEvents(fresh));
        queueDraw();
        if (!r.truncated || !fresh.length) break;
        const last = events[events.length - 1].t_ms;
        from = last > from ? last : from + 1;
      }
      events.sort((a, b) => a.t_ms - b.t_ms);
      status.textContent = t('timeline.events_n', {n: fmtNumber(events.length)});
    } catch (_) {
      status.textContent = t('timeline.partial');
    } finally { queueDraw(); }
  }
  if (ok) status.textContent = t('timeline.events_n', {n: fmtNumber(events.length)});
  loadAllEvents();

  return {
    setPlayhead,
    redraw: queueDraw,
    reveal(ms) {
      if (ms >= view.start && ms <= view.end) return;
      const span = view.end - view.start;
      lastNow = ms;
      setView(ms - span / 2, ms + span / 2);
    },
    setDuration(ms) {
      const whole = view.start <= 0 && view.end >= duration - 1;
      duration = Math.max(1000, ms);
      if (whole) setView(0, duration); else setView(view.start, Math.min(view.end, duration));
    },
    focus(startMs, endMs) {
      const span = Math.max(5000, (endMs - startMs) * 3);
      const c = (startMs + endMs) / 2;
      if (startMs < view.start || endMs > view.end) setView(c - span / 2, c + span / 2);
    },
    select(lane, item) { selected = item ? {lane, item} : null; queueDraw(); },
  };
}
