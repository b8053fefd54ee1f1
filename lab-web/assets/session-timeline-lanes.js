// The session timeline's lanes and their drawing: which lanes there are and
// how tall (steps, events, one speech lane per speaker, candidates, tags,
// markers, one lane per sensor channel), and a painter that draws one frame of them on the canvas for a
// given view. Pure drawing: the view, input and data loading live in
// session-timeline.js.

import {t} from './i18n.js';
import {fmtMs, fmtNumber} from './format.js';

const STEP_PALETTE = ['#a5d8ff', '#b2f2bb', '#ffec99', '#fcc2d7', '#d0bfff', '#99e9f2', '#ffd8a8', '#c0eb75', '#eebefa', '#ced4da'];
const SEV_COLORS = {1: '#74c0fc', 2: '#fab005', 3: '#fd7e14', 4: '#e03131'};

/** The lanes (with their y and height) for a timeline with these speech records and sensor lanes (GET …/sensors); axis and total height in px. */
export function layoutLanes(speechRecords, sensorLanes = []) {
  const lanes = [];
  const speakers = [...new Set(speechRecords.map((s) => s.speaker))];
  const order = ['participant', 'moderator'];
  speakers.sort((a, b) => (order.indexOf(a) + 1 || 9) - (order.indexOf(b) + 1 || 9));
  lanes.push({key: 'steps', label: t('lane.steps'), h: 22});
  lanes.push({key: 'events', label: t('lane.events'), h: 22});
  for (const sp of speakers) lanes.push({key: 'speech', speaker: sp, label: t('lane.speech', {speaker: t('speaker.' + sp) === 'speaker.' + sp ? sp : t('speaker.' + sp)}), h: 14});
  if (!speakers.length) lanes.push({key: 'speech', speaker: null, label: t('lane.speech_all'), h: 14});
  lanes.push({key: 'candidates', label: t('lane.candidates'), h: 18});
  lanes.push({key: 'tags', label: t('lane.tags'), h: 18});
  lanes.push({key: 'markers', label: t('lane.markers'), h: 18});
  for (const s of sensorLanes) {
    const unit = unitLabel(s.unit);
    lanes.push({key: 'sensor', sensor: s, label: unit ? `${s.channel}, ${unit}` : s.channel, h: 48});
  }
  const AXIS = 18;
  let y = AXIS;
  for (const l of lanes) { l.y = y; y += l.h; }
  const HEIGHT = y + 2;
  return {lanes, AXIS, HEIGHT};
}

/** A sensor unit as people write it (мкСм for microsiemens, уд/мин for bpm). */
export function unitLabel(unit) {
  const u = (unit || '').toLowerCase();
  const key = {microsiemens: 'us', microsiemen: 'us', us: 'us', 'µs': 'us', bpm: 'bpm', 'beats per minute': 'bpm', microvolts: 'uv', uv: 'uv', 'µv': 'uv', millivolts: 'mv', mv: 'mv'}[u];
  return key ? t('unit.' + key) : (unit || '');
}

/**
 * A painter for one canvas: paint({ctx, width, view, events, speech, markers, selected, sensors})
 * draws the lanes for view {start, end} (session ms) across width px.
 * page: the session model (steps, candidates, tags, journey step titles).
 */
export function createPainter(page, {lanes, AXIS, HEIGHT}) {
  const {state, stepIndex} = page;
  const stepTitle = (id) => page.stepTitle(id);
  // The frame being painted.
  let ctx, width, view, events, speech, markers, selected, sensors;
  const x = (ms) => (ms - view.start) / (view.end - view.start) * width;

  function paint(frame) {
    ({ctx, width, view, events, speech, markers, selected, sensors} = frame);
    if (!width) return;
    ctx.clearRect(0, 0, width, HEIGHT);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    lanes.forEach((l, i) => { ctx.fillStyle = i % 2 ? '#f7f8fa' : '#ffffff'; ctx.fillRect(0, l.y, width, l.h); });
    drawAxis();
    for (const l of lanes) {
      if (l.key === 'steps') drawSteps(l);
      else if (l.key === 'events') drawEvents(l);
      else if (l.key === 'speech') drawSpeech(l);
      else if (l.key === 'candidates') drawRanges(l, state.candidates, (c) => ({open: '#e8891c', accepted: '#2f9e44', rejected: '#adb5bd'}[c.status] || '#e8891c'));
      else if (l.key === 'tags') drawRanges(l, state.tags, (g) => SEV_COLORS[g.severity] || '#868e96');
      else if (l.key === 'markers') drawMarkers(l);
      else if (l.key === 'sensor') drawSensor(l);
    }
  }

  function drawAxis() {
    ctx.fillStyle = '#eef1f5'; ctx.fillRect(0, 0, width, AXIS);
    const span = view.end - view.start;
    const steps = [100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5];
    const step = steps.find((s) => s / span * width >= 80) || 36e5;
    ctx.fillStyle = '#495057'; ctx.strokeStyle = '#ced4da';
    for (let tm = Math.ceil(view.start / step) * step; tm <= view.end; tm += step) {
      const px = Math.round(x(tm)) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, AXIS - 5); ctx.lineTo(px, HEIGHT); ctx.globalAlpha = 0.35; ctx.stroke(); ctx.globalAlpha = 1;
      ctx.fillText(fmtMs(tm, {noTenths: step >= 1000}), px + 3, AXIS / 2);
    }
  }

  function drawSteps(l) {
    for (const s of state.steps) {
      if (s.end_ms < view.start || s.start_ms > view.end) continue;
      const x0 = Math.max(0, x(s.start_ms)), x1 = Math.min(width, x(s.end_ms));
      ctx.fillStyle = stepColor(s.step);
      ctx.fillRect(x0, l.y + 2, Math.max(1, x1 - x0 - 1), l.h - 4);
      if (x1 - x0 > 30) {
        ctx.save(); ctx.beginPath(); ctx.rect(x0, l.y, x1 - x0 - 2, l.h); ctx.clip();
        ctx.fillStyle = '#1f2933';
        const n = stepIndex.has(s.step) ? (stepIndex.get(s.step) + 1) + '. ' : '';
        ctx.fillText(n + (s.title || stepTitle(s.step)) + (s.visit > 1 ? ` (${s.visit})` : ''), x0 + 4, l.y + l.h / 2);
        ctx.restore();
      }
    }
  }

  function drawEvents(l) {
    const i0 = lowerBound(events, view.start, (e) => e.t_ms), i1 = lowerBound(events, view.end, (e) => e.t_ms);
    const n = i1 - i0;
    if (n <= 0) return;
    if (n <= width / 3) {
      for (let i = i0; i < i1; i++) {
        const e = events[i];
        ctx.fillStyle = eventColor(e);
        ctx.fillRect(Math.round(x(e.t_ms)), l.y + 3, 2, l.h - 6);
      }
      return;
    }
    // Zoomed out: one column per pixel, height ~ log(count); errors on top in red.
    const all = new Uint32Array(Math.ceil(width) + 1), bad = new Uint32Array(all.length);
    const k = width / (view.end - view.start);
    for (let i = i0; i < i1; i++) {
      const e = events[i];
      const px = ((e.t_ms - view.start) * k) | 0;
      all[px]++;
      if (e._bad) bad[px]++;
    }
    let max = 1;
    for (let i = 0; i < all.length; i++) if (all[i] > max) max = all[i];
    const lm = Math.log(1 + max), hh = l.h - 4;
    ctx.fillStyle = '#4c6ef5';
    for (let i = 0; i < all.length; i++) if (all[i]) { const h = Math.max(2, hh * Math.log(1 + all[i]) / lm); ctx.fillRect(i, l.y + l.h - 2 - h, 1, h); }
    ctx.fillStyle = '#e03131';
    for (let i = 0; i < bad.length; i++) if (bad[i]) ctx.fillRect(i, l.y + 2, 1, 5);
  }

  function drawSpeech(l) {
    ctx.fillStyle = l.speaker === 'moderator' ? '#9775fa' : '#20c997';
    let lastX = -1;
    for (const s of speech) {
      if (l.speaker && s.speaker !== l.speaker) continue;
      if (s.end_ms < view.start || s.start_ms > view.end) continue;
      const x0 = x(s.start_ms), x1 = x(s.end_ms);
      if (x1 < lastX) continue;
      ctx.fillRect(x0, l.y + 3, Math.max(1, x1 - x0), l.h - 6);
      lastX = x1;
    }
  }

  function drawRanges(l, items, color) {
    for (const it of items) {
      if (it.end_ms < view.start || it.start_ms > view.end) continue;
      const x0 = x(it.start_ms), x1 = x(it.end_ms);
      ctx.fillStyle = color(it);
      ctx.globalAlpha = it.status === 'rejected' ? 0.6 : 0.9;
      ctx.fillRect(x0, l.y + 3, Math.max(4, x1 - x0), l.h - 6);
      ctx.globalAlpha = 1;
      if (selected && selected.item === it) { ctx.strokeStyle = '#1c7ed6'; ctx.lineWidth = 2; ctx.strokeRect(x0 - 1, l.y + 2, Math.max(4, x1 - x0) + 2, l.h - 4); ctx.lineWidth = 1; }
    }
  }

  function drawMarkers(l) {
    ctx.fillStyle = '#d6336c';
    let lastEnd = -Infinity;
    for (const m of markers) {
      if (m.t_ms < view.start || m.t_ms > view.end) continue;
      const px = x(m.t_ms);
      ctx.fillRect(Math.round(px), l.y + 2, 2, l.h - 4);
      const label = m.label || '';
      if (label && px > lastEnd) {
        ctx.fillStyle = '#5c1d3a';
        const w = Math.min(ctx.measureText(label).width, 160);
        ctx.save(); ctx.beginPath(); ctx.rect(px + 4, l.y, w + 2, l.h); ctx.clip();
        ctx.fillText(label, px + 4, l.y + l.h / 2); ctx.restore();
        lastEnd = px + w + 10;
        ctx.fillStyle = '#d6336c';
      }
    }
  }

  // Min/max per column as served (sensors: lane id → series); the series may
  // be of a slightly older view while the next one loads. The scale is the
  // visible range's, so a response stands out at any zoom.
  function drawSensor(l) {
    const info = l.sensor;
    const s = sensors && sensors.get(info.lane);
    if (!s) return;
    let lo = Infinity, hi = -Infinity;
    for (let c = 0; c < s.min.length; c++) {
      if (s.min[c] == null) continue;
      lo = Math.min(lo, s.min[c]); hi = Math.max(hi, s.max[c]);
    }
    if (!isFinite(lo)) return;
    const pad = 4, h = l.h - 2 * pad;
    const range = hi - lo || 1;
    const y = (v) => l.y + pad + h - (v - lo) / range * h;
    const n = s.min.length, colMs = (s.to_ms - s.from_ms) / n;
    ctx.strokeStyle = '#1c7ed6'; ctx.lineWidth = 1;
    ctx.beginPath();
    for (let c = 0; c < n; c++) {
      if (s.min[c] == null) continue;
      const px = x(s.from_ms + (c + 0.5) * colMs);
      if (px < -1 || px > width + 1) continue;
      const y0 = y(s.max[c]), y1 = y(s.min[c]);
      ctx.moveTo(Math.round(px) + 0.5, y0);
      ctx.lineTo(Math.round(px) + 0.5, Math.max(y1, y0 + 1));
    }
    ctx.stroke();
    const unit = unitLabel(info.unit);
    ctx.textAlign = 'right';
    for (const [v, ty] of [[hi, l.y + 8], [lo, l.y + l.h - 8]]) {
      const text = `${fmtNumber(v, 2)} ${unit}`;
      const w = ctx.measureText(text).width + 6;
      ctx.fillStyle = 'rgba(255,255,255,0.85)'; ctx.fillRect(width - w - 2, ty - 7, w, 14);
      ctx.fillStyle = '#495057'; ctx.fillText(text, width - 5, ty);
    }
    ctx.textAlign = 'left';
  }

  function stepColor(stepId) {
    const i = stepIndex.has(stepId) ? stepIndex.get(stepId) : [...String(stepId)].reduce((a, c) => a + c.charCodeAt(0), 0);
    return STEP_PALETTE[i % STEP_PALETTE.length];
  }

  return paint;
}

export function sortEvents(list) {
  for (const e of list) e._bad = /error|invalid|device_lost/.test(e.kind);
  return list.sort((a, b) => a.t_ms - b.t_ms);
}

export function lowerBound(arr, value, key) {
  let lo = 0, hi = arr.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (key(arr[mid]) < value) lo = mid + 1; else hi = mid; }
  return lo;
}

function eventColor(e) {
  if (e._bad) return '#e03131';
  const k = e.kind || '';
  if (k === 'click') return '#1c7ed6';
  if (k === 'click_effect') return '#74c0fc';
  if (k === 'navigation') return '#2f9e44';
  if (k === 'focus' || k === 'input' || k === 'change' || k === 'submit') return '#7048e8';
  if (k === 'scroll') return '#adb5bd';
  if (k.startsWith('system.')) return '#495057';
  if (k === 'marker') return '#d6336c';
  return '#1098ad';
}
