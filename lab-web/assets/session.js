// Session review page (/sessions/{id}): synchronised screen + camera
// playback, transcript with click-to-seek, a canvas timeline with lanes,
// friction candidates (accept / reject), tags (form, list, history, clips)
// and keyboard-driven tagging.
//
// Time: everything here is session milliseconds. The screen rendition's
// currentTime 0 is session time `media.screen_start_ms`, so
// session_ms = screen_start_ms + currentTime * 1000 (the camera has its own
// `camera_start_ms`, defaulting to the screen's).
'use strict';

Lab.page('session', async ({main, id, me}) => {
  const {el, t, api, clear, add, refill, fmtMs, fmtDate} = Lab;
  const sid = encodeURIComponent(id);
  const canRaw = Lab.can('raw');
  const canTag = Lab.can('tag');

  const detail = await api('GET', `/sessions/${sid}`);
  const categories = await Lab.categories();
  Lab.setTitle(t('session.title', {participant: detail.participant || id}));

  const STEP_PALETTE = ['#a5d8ff', '#b2f2bb', '#ffec99', '#fcc2d7', '#d0bfff', '#99e9f2', '#ffd8a8', '#c0eb75', '#eebefa', '#ced4da'];
  const SEV_COLORS = {1: '#74c0fc', 2: '#fab005', 3: '#fd7e14', 4: '#e03131'};
  const SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];
  // Top-level mutable state used by the functions below (declared before any of them runs).
  let lastUserScroll = 0;   // transcript: when the user last scrolled it by hand
  let currentWord = null;   // transcript: the highlighted word
  let candFilter = 'all';   // candidates: status filter

  const journeySteps = (detail.journey && detail.journey.steps) || [];
  const stepIndex = new Map(journeySteps.map((s, i) => [s.id, i]));
  const stepTitle = (stepId) => {
    if (!stepId) return '—';
    const s = journeySteps.find((x) => x.id === stepId);
    return s ? s.title : stepId;
  };

  const state = {
    durationMs: detail.duration_ms || 0,
    words: [],           // flat, sorted by start: {start, end, speaker, text, node}
    segments: [],
    steps: [],           // timeline step intervals
    candidates: [],
    tags: [],
    markIn: null,
    markOut: null,
    clipJobs: new Map(), // job id -> tag id
  };

  // ================= layout =================
  const head = el('section', {class: 'session-head', id: 'session-head'});
  const playerCol = el('div', {class: 'player-col'});
  const transcriptBox = el('div', {id: 'transcript', class: 'transcript', tabindex: '0', 'aria-live': 'off'});
  const transcriptPanel = el('section', {class: 'panel transcript-panel', 'aria-labelledby': 'transcript-h'});
  const candidatesBox = el('div', {id: 'candidates', class: 'candidates'});
  const candidatesPanel = el('section', {class: 'panel candidates-panel', 'aria-labelledby': 'candidates-h'});
  const timelineRoot = el('section', {class: 'panel timeline-panel', 'aria-label': t('timeline.title')});
  const tagsBox = el('div', {id: 'tags', class: 'tags'});
  const tagsPanel = el('section', {class: 'panel tags-panel', 'aria-labelledby': 'tags-h'});

  main.classList.add('main-session');
  add(main, head,
    el('div', {class: 'review-grid'}, playerCol,
      el('div', {class: 'side-col'}, transcriptPanel, candidatesPanel)),
    timelineRoot, tagsPanel);

  renderHead();

  // ================= player =================
  const player = createPlayer(playerCol, detail.media || {}, state.durationMs);

  // ================= data =================
  const [transcript, timeline, tagsResp] = await Promise.all([
    canRaw ? api('GET', `/sessions/${sid}/transcript`, null, {quiet: [403, 404]}).catch((e) => ({error: e})) : Promise.resolve({error: {status: 403}}),
    canRaw ? api('GET', `/sessions/${sid}/timeline`, null, {quiet: [403, 404]}).catch((e) => ({error: e})) : Promise.resolve({error: {status: 403}}),
    api('GET', `/sessions/${sid}/tags`, null, {quiet: [403, 404]}).catch((e) => ({error: e})),
  ]);

  if (timeline && !timeline.error) {
    state.steps = timeline.steps || [];
    state.candidates = timeline.candidates || [];
    if (!state.durationMs && timeline.duration_ms) { state.durationMs = timeline.duration_ms; player.setDuration(state.durationMs); }
  }
  state.tags = (tagsResp && !tagsResp.error ? tagsResp.tags : (timeline && timeline.tags)) || [];

  renderTranscript(transcript);
  const tl = createTimeline(timelineRoot, timeline);
  renderCandidates();
  renderTags();
  const tagForm = createTagForm();

  // One loop drives the playhead, the current word and the clock display.
  player.onTick((now) => {
    updateCurrentWord(now);
    tl.setPlayhead(now, !player.paused());
  });
  player.onSeek((ms) => tl.reveal(ms));
  player.onDuration((ms) => { state.durationMs = ms; tl.setDuration(ms); });

  openDeepLink();

  // ================= deep link =================
  /**
   * /sessions/{id}?t=MS&tag=ID (from search hits, the journey map, findings):
   * seek to session time MS once the media metadata is loaded, scroll the
   * transcript there, and highlight tag ID (seeking to its start when no t).
   */
  function openDeepLink() {
    const params = new URL(location.href).searchParams;
    const rawT = params.get('t');
    let at = rawT !== null && /^\d+(\.\d+)?$/.test(rawT.trim()) ? Number(rawT) : null;
    const tagId = params.get('tag');
    const tag = tagId ? state.tags.find((g) => String(g.id) === tagId) : null;
    if (tag) {
      const node = tagsBox.querySelector(`.tag[data-id="${CSS.escape(String(tag.id))}"]`);
      selectTag(tag.id, false);
      if (node) {
        node.classList.add('linked');
        node.scrollIntoView({block: 'nearest'});
      }
      if (at === null) at = Number(tag.start_ms);
    }
    if (at === null || !isFinite(at)) return;
    player.ready(() => {
      player.seek(at);
      revealTranscript(at);
    });
  }

  /** Scrolls the transcript to the segment at (or next after) session time ms and marks it. */
  function revealTranscript(ms) {
    const segs = [...transcriptBox.querySelectorAll('.seg')];
    if (!segs.length) return;
    const starts = state.segments.map((s) => Number(s.start_ms));
    let i = state.segments.findIndex((s) => Number(s.start_ms) <= ms && ms < Number(s.end_ms));
    if (i < 0) i = starts.findIndex((s) => s >= ms);
    if (i < 0) i = segs.length - 1;
    const node = segs[i];
    if (!node) return;
    for (const n of transcriptBox.querySelectorAll('.seg.linked')) n.classList.remove('linked');
    node.classList.add('linked');
    transcriptBox.scrollTop = Math.max(0, offsetWithin(transcriptBox, node) - transcriptBox.clientHeight / 3);
    lastUserScroll = performance.now(); // keep the current-word follower from scrolling it away at once
  }

  // ================= head =================
  function renderHead() {
    const d = detail;
    const a = d.analysis || {status: 'none'};
    const facts = el('div', {class: 'facts'},
      fact(t('col.date'), fmtDate(d.started_at)),
      fact(t('col.station'), d.station || '—'),
      fact(t('col.duration'), fmtMs(d.duration_ms, {noTenths: true})),
      d.moderator ? fact(t('session.moderator'), d.moderator) : null,
      d.segment ? fact(t('col.segment'), d.segment) : null,
      fact(t('col.recording'), el('span', {class: 'badge'}, t('recording.' + (d.status || 'unknown')))),
      fact(t('col.analysis'), el('span', {id: 'analysis-status'}, analysisText(a))));
    const links = el('div', {class: 'head-links'});
    if (d.journey || d.journey_id) {
      const jid = (d.journey && d.journey.id) || d.journey_id;
      add(links, el('a', {class: 'btn btn-small journey-link', id: 'journey-link', href: '/journeys/' + encodeURIComponent(jid)}, t('session.journey_map')));
    }
    if (canRaw && !d.withdrawn) {
      add(links, el('span', {class: 'export-links'}, t('session.export'), ' ',
        ['eaf', 'vtt', 'srt'].map((ext) => el('a', {class: 'btn btn-small btn-ghost', href: `/api/v1/sessions/${sid}/export.${ext}`,
          download: `${d.participant || id}.${ext}`, dataset: {export: ext}}, ext.toUpperCase()))));
    }
    if (Lab.can('jobs')) {
      add(links, el('button', {type: 'button', class: 'btn btn-small', onclick: async () => {
        try { await api('POST', `/sessions/${sid}/analyze`, {}); Lab.toast(t('session.analysis_queued'), 'ok'); } catch (_) { /* toast */ }
      }}, t('sessions.analyze')));
    }
    if (Lab.can('withdraw') && !d.withdrawn) add(links, withdrawButton());
    add(links, el('button', {type: 'button', class: 'btn btn-small btn-ghost', id: 'help-button', title: t('keys.title'), onclick: showHelp}, '?'));

    refill(head,
      el('div', {class: 'head-title'},
        el('a', {href: '/', class: 'back-link'}, '← ', t('nav.sessions')),
        el('h1', null, t('session.participant'), ' ', el('span', {class: 'code'}, d.participant || id)),
        el('span', {class: 'muted'}, [d.study, (d.journey && d.journey.title) || d.life_situation].filter(Boolean).join(' · '))),
      facts,
      el('div', {class: 'break'}),
      d.qa ? qaSummary(d.qa) : el('span', {class: 'spacer'}),
      links,
      d.withdrawn ? el('p', {class: 'banner banner-warn'}, t('session.withdrawn')) : null);
  }

  function fact(label, value) {
    return el('span', {class: 'fact'}, el('span', {class: 'fact-label'}, label), ' ', el('span', {class: 'fact-value'}, value));
  }

  function analysisText(a) {
    const s = t('analysis.' + (a.status || 'none'));
    if (Lab.ACTIVE_JOB.has(a.status)) return `${s} ${a.stage ? '· ' + a.stage : ''} ${a.progress != null ? Lab.fmtPercent(a.progress) : ''}`.trim();
    return s;
  }

  function withdrawButton() {
    const btn = el('button', {type: 'button', class: 'btn btn-small btn-danger'}, t('session.withdraw'));
    btn.addEventListener('click', () => {
      const reason = el('input', {name: 'reason', required: true, size: 40, placeholder: t('session.withdraw_reason')});
      const form = el('form', {class: 'stack'},
        el('p', null, t('session.withdraw_explain')), reason,
        el('div', {class: 'row-actions'}, el('button', {type: 'submit', class: 'btn btn-danger'}, t('session.withdraw_confirm'))));
      const m = Lab.modal(t('session.withdraw'), form);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        if (!reason.value.trim()) { reason.focus(); return; }
        try { await api('POST', `/sessions/${sid}/withdraw`, {reason: reason.value.trim()}); m.close(); location.reload(); } catch (_) { /* toast */ }
      });
      reason.focus();
    });
    return btn;
  }

  /** qa.json as the analyzer writes it, tolerant of tuple or object shapes. */
  function qaSummary(qa) {
    const items = [];
    const gaps = Array.isArray(qa.gaps) ? qa.gaps : [];
    items.push(el('span', {class: ['qa-item', gaps.length && 'qa-bad']}, t('qa.gaps', {n: gaps.length})));
    const frames = (Array.isArray(qa.frames) ? qa.frames : []).map((f) => Array.isArray(f)
      ? {track: f[0], frames: f[1], expected: f[2]} : {track: f.track, frames: f.frames, expected: f.expected_frames ?? f.expected});
    for (const f of frames) {
      const dropped = Math.max(0, (f.expected || 0) - (f.frames || 0));
      const share = f.expected ? dropped / f.expected : 0;
      items.push(el('span', {class: ['qa-item', share > 0.02 && 'qa-bad'], title: `${f.frames} / ${f.expected}`},
        t('qa.dropped', {track: t('track.' + f.track) === 'track.' + f.track ? f.track : t('track.' + f.track), n: dropped, pct: Lab.fmtNumber(share * 100, 1)})));
    }
    let unc = qa.clock_uncertainty_ms;
    if (Array.isArray(unc)) unc = unc.map((c) => Array.isArray(c) ? c[1] : (c && (c.uncertainty_ms ?? c.ms)));
    else if (unc && typeof unc === 'object') unc = Object.values(unc);
    else if (typeof unc === 'number') unc = [unc];
    else unc = [];
    unc = unc.filter((x) => typeof x === 'number');
    items.push(el('span', {class: ['qa-item', unc.some((x) => x > 33) && 'qa-bad']},
      unc.length ? t('qa.clock', {ms: Lab.fmtNumber(Math.max(...unc), 1)}) : t('qa.clock_none')));
    const dec = Array.isArray(qa.decode_errors) ? qa.decode_errors : [];
    if (dec.length) items.push(el('span', {class: 'qa-item qa-bad'}, t('qa.decode', {n: dec.length})));
    const rec = Array.isArray(qa.recovered_segments) ? qa.recovered_segments : [];
    if (rec.length) items.push(el('span', {class: 'qa-item qa-bad'}, t('qa.recovered', {n: rec.length})));
    if (qa.events_rejected) items.push(el('span', {class: 'qa-item'}, t('qa.rejected', {n: qa.events_rejected})));
    if (qa.transcript_status && qa.transcript_status !== 'ok') items.push(el('span', {class: 'qa-item qa-bad'}, qa.transcript_status));

    const details = el('ul', {class: 'qa-details'},
      gaps.map((g) => el('li', null, t('qa.gap_line', {track: g.track, from: fmtMs((g.start_ns ?? 0) / 1e6), to: g.end_ns == null ? '…' : fmtMs(g.end_ns / 1e6)}), ' ', el('span', {class: 'muted'}, g.reason || ''))),
      dec.map((x) => el('li', null, typeof x === 'string' ? x : JSON.stringify(x))),
      rec.map((x) => el('li', null, t('qa.recovered_file'), ' ', String(x))));
    return el('details', {class: 'qa', id: 'qa-summary'}, el('summary', null, el('strong', null, t('qa.title')), ' ', items), details);
  }

  // ================= player =================
  function createPlayer(root, media, durationMs) {
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
      screen.src = Lab.safeUrl(media.screen);
      if (media.thumbnails && media.thumbnails.length) screen.poster = Lab.safeUrl(media.thumbnails[0].url);
      add(stage, screen);
    } else {
      const why = detail.withdrawn ? t('player.why_withdrawn') : !canRaw ? t('player.why_role')
        : (detail.analysis && detail.analysis.status === 'done') ? t('player.why_missing') : t('player.why_not_rendered');
      add(stage, el('div', {class: 'media-unavailable', id: 'media-unavailable'}, t('player.unavailable'),
        el('div', {class: 'media-why'}, why)));
    }
    if (media.camera && screen) {
      camera = el('video', {id: 'camera', preload: 'auto', playsinline: true, muted: true, dataset: {startMs: String(cameraStart)}});
      camera.muted = true; // audio is in both renditions; the screen's plays
      camera.src = Lab.safeUrl(media.camera);
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
      if (screen) { const p = screen.play(); if (p) p.catch((e) => { if (e.name !== 'AbortError') Lab.toast(t('player.play_failed')); }); } else { virt.since = performance.now(); virt.playing = true; loop(); }
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
    const speedSel = Lab.select('speed', [0.5, 0.75, 1, 1.25, 1.5, 2].map((r) => [String(r), `${String(r).replace('.', Lab.lang() === 'ru' ? ',' : '.')}×`]), '1',
      {id: 'speed', 'aria-label': t('player.speed'), title: t('player.speed')});
    // Give the keyboard back to the shortcuts once a value is picked.
    speedSel.addEventListener('change', () => { setRate(Number(speedSel.value)); speedSel.blur(); });
    const marks = el('span', {class: 'marks', id: 'marks'});
    const camBtn = camera ? el('button', {type: 'button', class: 'btn btn-small btn-ghost', id: 'camera-layout', title: t('player.camera_layout'), onclick: cycleCamera}, t('player.camera')) : null;
    const tagBtn = canTag ? el('button', {type: 'button', class: 'btn btn-small', id: 'new-tag', title: t('tags.new') + ' (T)', onclick: () => openTagFromMarks()}, '+ T') : null;

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

  // ================= transcript =================
  function renderTranscript(tr) {
    const find = el('input', {type: 'search', class: 'transcript-find', placeholder: t('transcript.find'), 'aria-label': t('transcript.find')});
    add(transcriptPanel, el('div', {class: 'panel-head'}, el('h2', {id: 'transcript-h'}, t('transcript.title')), find), transcriptBox);
    if (!tr || tr.error) {
      add(transcriptBox, el('p', {class: 'empty'}, tr && tr.error && tr.error.status === 403 ? t('common.no_access') : t('transcript.none')));
      return;
    }
    state.segments = tr.segments || [];
    if (!state.segments.length) {
      add(transcriptBox, el('p', {class: 'empty'}, tr.status && tr.status !== 'ok' ? t('transcript.status', {status: tr.status}) : t('transcript.none')));
      return;
    }
    const frag = document.createDocumentFragment();
    for (const seg of state.segments) {
      const speaker = seg.speaker || 'unknown';
      const text = el('p', {class: 'seg-text'});
      const words = seg.words && seg.words.length ? seg.words : [{start_ms: seg.start_ms, end_ms: seg.end_ms, text: seg.text, confidence: null}];
      words.forEach((w, i) => {
        const span = el('span', {class: ['word', w.confidence != null && w.confidence < 0.5 && 'low-conf'],
          dataset: {startMs: String(w.start_ms), endMs: String(w.end_ms)}}, w.text);
        if (i) add(text, ' ');
        add(text, span);
        state.words.push({start: w.start_ms, end: w.end_ms, speaker: w.speaker || speaker, text: w.text, node: span});
      });
      add(frag, el('div', {class: ['seg', 'speaker-' + speaker], dataset: {speaker, segId: seg.id ?? ''}},
        el('div', {class: 'seg-head'},
          el('span', {class: 'speaker'}, t('speaker.' + speaker) === 'speaker.' + speaker ? speaker : t('speaker.' + speaker)),
          el('button', {type: 'button', class: 'seg-time', dataset: {startMs: String(seg.start_ms)}}, fmtMs(seg.start_ms))),
        text));
    }
    state.words.sort((a, b) => a.start - b.start);
    add(transcriptBox, frag);

    transcriptBox.addEventListener('click', (e) => {
      const target = e.target.closest('.word, .seg-time');
      if (!target) return;
      if (String(window.getSelection()).length > 1) return; // selecting a quote, not seeking
      player.seek(Number(target.dataset.startMs));
      lastUserScroll = 0;
    });
    for (const ev of ['wheel', 'touchmove', 'mousedown', 'keydown']) {
      transcriptBox.addEventListener(ev, () => { lastUserScroll = performance.now(); }, {passive: true});
    }
    // Find: highlight matches, Enter jumps to the next one.
    let hits = [], hitIdx = -1;
    find.addEventListener('input', () => {
      for (const w of hits) w.node.classList.remove('hit');
      const q = find.value.trim().toLowerCase();
      hits = q.length < 2 ? [] : state.words.filter((w) => w.text.toLowerCase().includes(q));
      for (const w of hits) w.node.classList.add('hit');
      hitIdx = -1;
    });
    find.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || !hits.length) return;
      e.preventDefault();
      hitIdx = (hitIdx + 1) % hits.length;
      player.seek(hits[hitIdx].start);
      lastUserScroll = 0;
    });
  }

  /** Last word starting at or before `now` (binary search). */
  function wordAt(now) {
    const ws = state.words;
    let lo = 0, hi = ws.length - 1, ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ws[mid].start <= now) { ans = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return ans;
  }

  function updateCurrentWord(now) {
    if (!state.words.length) return;
    const i = wordAt(now + 1);
    const w = i >= 0 && now <= state.words[i].end + 300 ? state.words[i] : null;
    if (w === currentWord) return;
    if (currentWord) currentWord.node.classList.remove('current');
    currentWord = w;
    if (!w) return;
    w.node.classList.add('current');
    if (performance.now() - lastUserScroll > 3000) {
      const box = transcriptBox;
      const top = offsetWithin(box, w.node);
      if (top < box.scrollTop + 20 || top > box.scrollTop + box.clientHeight - 40) {
        box.scrollTop = Math.max(0, top - box.clientHeight / 3);
      }
    }
  }

  /** Participant words overlapping [start, end]; falls back to non-moderator words when no channel is labelled participant. */
  function quoteFor(start, end) {
    const hasParticipant = state.words.some((w) => w.speaker === 'participant');
    const ok = (w) => hasParticipant ? w.speaker === 'participant' : w.speaker !== 'moderator';
    return state.words.filter((w) => ok(w) && w.end > start && w.start < end).map((w) => w.text).join(' ');
  }

  /** Range of the transcript words the user selected with the mouse, if any. */
  function selectedWordRange() {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed || !transcriptBox.contains(sel.anchorNode)) return null;
    const picked = state.words.filter((w) => sel.containsNode(w.node, true));
    if (!picked.length) return null;
    return {start: Math.min(...picked.map((w) => w.start)), end: Math.max(...picked.map((w) => w.end)), quote: picked.map((w) => w.text).join(' ')};
  }

  // ================= timeline =================
  function createTimeline(root, data) {
    const ok = data && !data.error;
    const lanes = [];
    const speakers = ok ? [...new Set((data.speech || []).map((s) => s.speaker))] : [];
    const order = ['participant', 'moderator'];
    speakers.sort((a, b) => (order.indexOf(a) + 1 || 9) - (order.indexOf(b) + 1 || 9));
    lanes.push({key: 'steps', label: t('lane.steps'), h: 22});
    lanes.push({key: 'events', label: t('lane.events'), h: 22});
    for (const sp of speakers) lanes.push({key: 'speech', speaker: sp, label: t('lane.speech', {speaker: t('speaker.' + sp) === 'speaker.' + sp ? sp : t('speaker.' + sp)}), h: 14});
    if (!speakers.length) lanes.push({key: 'speech', speaker: null, label: t('lane.speech_all'), h: 14});
    lanes.push({key: 'candidates', label: t('lane.candidates'), h: 18});
    lanes.push({key: 'tags', label: t('lane.tags'), h: 18});
    lanes.push({key: 'markers', label: t('lane.markers'), h: 18});
    const AXIS = 18;
    let y = AXIS;
    for (const l of lanes) { l.y = y; y += l.h; }
    const HEIGHT = y + 2;

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
      }
      rangeLabel.textContent = `${fmtMs(view.start)} – ${fmtMs(view.end)}`;
      placeSelection();
      setPlayhead(lastNow, false);
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
      if (hit && hit.lane === 'candidates') { selectItem(hit); selectCandidate(hit.item.id, true); }
      else if (hit && hit.lane === 'tags') { selectItem(hit); selectTag(hit.item.id, true); }
      else player.seek(tAt(e.clientX - r.left));
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
        lines.push([el('strong', null, Lab.detectorLabel(c.detector)), ' ', fmtMs(c.start_ms), '–', fmtMs(c.end_ms)], [t('candidate.status_' + (c.status || 'open'))]);
        if (c.note) lines.push([c.note]);
      } else if (hit.lane === 'tags') {
        const g = hit.item;
        lines.push([el('strong', null, Lab.categoryLabel(g.category, categories)), ' · ', t('severity.' + g.severity)], [fmtMs(g.start_ms) + '–' + fmtMs(g.end_ms)]);
        if (g.note) lines.push([g.note]);
      } else if (hit.lane === 'steps') {
        const s = hit.item;
        thumb = nearestThumb(tm);
        lines.push([el('strong', null, s.title || stepTitle(s.step))], [fmtMs(s.start_ms) + '–' + fmtMs(s.end_ms) + ' (' + Lab.fmtDuration(s.end_ms - s.start_ms) + ')']);
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
        for (let page = 0; page < 40; page++) {
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
        status.textContent = t('timeline.events_n', {n: Lab.fmtNumber(events.length)});
      } catch (_) {
        status.textContent = t('timeline.partial');
      } finally { queueDraw(); }
    }
    if (ok) status.textContent = t('timeline.events_n', {n: Lab.fmtNumber(events.length)});
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

  function sortEvents(list) {
    for (const e of list) e._bad = /error|invalid|device_lost/.test(e.kind);
    return list.sort((a, b) => a.t_ms - b.t_ms);
  }

  function lowerBound(arr, value, key) {
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

  function stepColor(stepId) {
    const i = stepIndex.has(stepId) ? stepIndex.get(stepId) : [...String(stepId)].reduce((a, c) => a + c.charCodeAt(0), 0);
    return STEP_PALETTE[i % STEP_PALETTE.length];
  }

  // ================= candidates =================
  function renderCandidates() {
    const counts = {open: 0, accepted: 0, rejected: 0};
    for (const c of state.candidates) counts[c.status || 'open'] = (counts[c.status || 'open'] || 0) + 1;
    const filterSel = Lab.select('candidate-filter', [
      ['all', t('candidates.all', {n: state.candidates.length})], ['open', t('candidates.open', {n: counts.open})],
      ['accepted', t('candidates.accepted', {n: counts.accepted})], ['rejected', t('candidates.rejected', {n: counts.rejected})]], candFilter,
    {'aria-label': t('candidates.filter')});
    filterSel.addEventListener('change', () => { candFilter = filterSel.value; renderCandidates(); });
    refill(candidatesPanel, 
      el('div', {class: 'panel-head'}, el('h2', {id: 'candidates-h'}, t('candidates.title')),
        el('span', {class: 'count-pill', title: t('candidates.open_title')}, String(counts.open)), el('span', {class: 'spacer'}), filterSel),
      candidatesBox);
    clear(candidatesBox);
    const list = state.candidates.filter((c) => candFilter === 'all' || (c.status || 'open') === candFilter)
      .sort((a, b) => a.start_ms - b.start_ms);
    if (!list.length) {
      const analysed = detail.analysis && detail.analysis.status === 'done';
      const msg = state.candidates.length ? t('candidates.none_filtered') : !canRaw || (timeline && timeline.error) ? t('common.no_access')
        : analysed ? t('candidates.none') : t('candidates.not_analysed');
      add(candidatesBox, el('p', {class: 'empty'}, msg));
      return;
    }
    for (const c of list) add(candidatesBox, candidateItem(c));
  }

  function candidateItem(c) {
    const st = c.status || 'open';
    const words = (c.evidence && c.evidence.words || []).map((w) => typeof w === 'string' ? w : w.text).filter(Boolean);
    const evCount = (c.evidence && c.evidence.events || []).length;
    const item = el('div', {class: ['candidate', 'status-' + st], dataset: {id: c.id, status: st}, tabindex: '-1'},
      el('div', {class: 'cand-head'},
        el('span', {class: 'detector'}, Lab.detectorLabel(c.detector)),
        el('button', {type: 'button', class: 'time-link', title: t('common.seek'), onclick: () => { player.seek(c.start_ms); tl.focus(c.start_ms, c.end_ms); }},
          fmtMs(c.start_ms), '–', fmtMs(c.end_ms)),
        el('span', {class: 'confidence', title: t('candidate.confidence')}, Lab.fmtPercent(c.confidence)),
        el('span', {class: ['badge', 'badge-' + st, 'cand-status']}, t('candidate.status_' + st))),
      el('div', {class: 'cand-meta muted small'}, t('candidate.step'), ': ', stepTitle(c.step),
        evCount ? ' · ' + t('candidate.events_n', {n: evCount}) : ''),
      c.note ? el('div', {class: 'cand-note'}, c.note) : null,
      words.length ? el('div', {class: 'cand-words'}, '«', words.join(' '), '»') : null,
      st === 'rejected' && c.reason ? el('div', {class: 'cand-reason small'}, t('candidate.reason'), ': ', c.reason) : null,
      st === 'accepted' && c.tag_id != null ? el('button', {type: 'button', class: 'link small', onclick: () => selectTag(c.tag_id, true)}, t('candidate.go_to_tag')) : null);
    if (canTag && st === 'open') {
      const actions = el('div', {class: 'cand-actions'});
      const accept = el('button', {type: 'button', class: 'btn btn-small btn-ok accept'}, t('candidate.accept'));
      const reject = el('button', {type: 'button', class: 'btn btn-small btn-ghost reject'}, t('candidate.reject'));
      accept.addEventListener('click', async () => {
        accept.disabled = reject.disabled = true;
        try {
          const r = await api('POST', `/sessions/${sid}/candidates/${encodeURIComponent(c.id)}/accept`, {});
          const tag = r && r.tag;
          Object.assign(c, {status: 'accepted', tag_id: tag ? tag.id : c.tag_id});
          if (tag) upsertTag(tag);
          renderCandidates(); tl.redraw();
          Lab.toast(t('candidate.accepted_toast'), 'ok', 2500);
        } catch (_) { accept.disabled = reject.disabled = false; }
      });
      reject.addEventListener('click', () => {
        const reason = el('input', {class: 'reject-reason', name: 'reason', placeholder: t('candidate.reason_placeholder'), 'aria-label': t('candidate.reason'), required: true});
        const confirm = el('button', {type: 'submit', class: 'btn btn-small btn-danger reject-confirm'}, t('candidate.reject_confirm'));
        const cancel = el('button', {type: 'button', class: 'btn btn-small btn-ghost', onclick: () => { form.replaceWith(actions); }}, t('common.cancel'));
        const quick = el('div', {class: 'quick-reasons'}, ['reason_false', 'reason_duplicate', 'reason_expected'].map((k) =>
          el('button', {type: 'button', class: 'chip', onclick: () => { reason.value = t('candidate.' + k); reason.focus(); }}, t('candidate.' + k))));
        const form = el('form', {class: 'reject-form'}, el('div', {class: 'row'}, reason, confirm, cancel), quick);
        form.addEventListener('submit', async (e) => {
          e.preventDefault();
          const text = reason.value.trim();
          if (!text) { reason.classList.add('invalid'); reason.focus(); return; }
          confirm.disabled = true;
          try {
            const r = await api('POST', `/sessions/${sid}/candidates/${encodeURIComponent(c.id)}/reject`, {reason: text});
            Object.assign(c, r && r.id != null ? r : {status: 'rejected', reason: text});
            renderCandidates(); tl.redraw();
          } catch (_) { confirm.disabled = false; }
        });
        reason.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); form.replaceWith(actions); } });
        actions.replaceWith(form);
        reason.focus();
      });
      add(actions, accept, reject);
      add(item, actions);
    }
    item.addEventListener('click', (e) => {
      if (e.target.closest('button, input, form, a')) return;
      selectCandidate(c.id, false);
      player.seek(c.start_ms);
    });
    return item;
  }

  function selectCandidate(cid, scroll) {
    for (const n of candidatesBox.querySelectorAll('.candidate.selected')) n.classList.remove('selected');
    let node = candidatesBox.querySelector(`.candidate[data-id="${CSS.escape(String(cid))}"]`);
    if (!node && candFilter !== 'all') { candFilter = 'all'; renderCandidates(); node = candidatesBox.querySelector(`.candidate[data-id="${CSS.escape(String(cid))}"]`); }
    if (!node) return;
    node.classList.add('selected');
    const c = state.candidates.find((x) => String(x.id) === String(cid));
    if (c) { tl.select('candidates', c); if (scroll) player.seek(c.start_ms); }
    if (scroll) scrollWithin(candidatesBox, node);
  }

  /** Position of node's top inside box's scrolled content. */
  function offsetWithin(box, node) {
    return node.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop;
  }

  function scrollWithin(box, node) {
    const top = offsetWithin(box, node);
    if (top < box.scrollTop || top + node.offsetHeight > box.scrollTop + box.clientHeight) box.scrollTop = Math.max(0, top - 8);
  }

  // ================= tags =================
  function upsertTag(tag) {
    const i = state.tags.findIndex((g) => String(g.id) === String(tag.id));
    if (i >= 0) state.tags[i] = tag; else state.tags.push(tag);
    renderTags();
    tl.redraw();
  }

  function renderTags() {
    const newBtn = canTag ? el('button', {type: 'button', class: 'btn btn-small', onclick: () => openTagFromMarks()}, '+ ', t('tags.new'), ' ', el('kbd', null, 'T')) : null;
    refill(tagsPanel, el('div', {class: 'panel-head'}, el('h2', {id: 'tags-h'}, t('tags.title')),
      el('span', {class: 'count-pill'}, String(state.tags.length)), el('span', {class: 'spacer'}), newBtn), tagsBox);
    clear(tagsBox);
    if (!state.tags.length) { add(tagsBox, el('p', {class: 'empty'}, t('tags.none'))); return; }
    const list = state.tags.slice().sort((a, b) => a.start_ms - b.start_ms);
    for (const g of list) add(tagsBox, tagItem(g));
  }

  function tagItem(g) {
    const clipBox = el('span', {class: 'clip-box'}, clipState(g));
    const item = el('div', {class: ['tag', 'sev-border-' + g.severity], dataset: {id: g.id}, tabindex: '-1'},
      el('div', {class: 'tag-main'},
        el('div', {class: 'tag-head'},
          el('button', {type: 'button', class: 'time-link', onclick: () => { player.seek(g.start_ms); tl.focus(g.start_ms, g.end_ms); }}, fmtMs(g.start_ms), '–', fmtMs(g.end_ms)),
          el('span', {class: 'tag-step'}, stepTitle(g.step)),
          el('span', {class: 'tag-category'}, Lab.categoryLabel(g.category, categories)),
          Lab.severityBadge(g.severity), Lab.emotionBadge(g.emotion),
          g.candidate_id ? el('span', {class: 'badge badge-muted', title: t('tags.from_candidate')}, t('tags.from_candidate_short')) : null),
        g.note ? el('div', {class: 'tag-note'}, g.note) : null,
        g.quote ? el('blockquote', {class: 'tag-quote'}, '«', g.quote, '»') : null,
        el('div', {class: 'tag-meta muted small'}, [userName(g.created_by), g.updated_at || g.created_at ? fmtDate(g.updated_at || g.created_at) : null].filter(Boolean).join(' · '))),
      el('div', {class: 'tag-actions'},
        canTag ? el('button', {type: 'button', class: 'btn btn-small btn-ghost edit', onclick: () => tagForm.open(g)}, t('common.edit')) : null,
        canTag ? el('button', {type: 'button', class: 'btn btn-small btn-ghost delete', onclick: () => deleteTag(g)}, t('common.delete')) : null,
        el('button', {type: 'button', class: 'btn btn-small btn-ghost history', onclick: () => toggleHistory(g, item)}, t('tags.history')),
        canTag ? el('button', {type: 'button', class: 'btn btn-small btn-ghost clip', onclick: () => makeClip(g, clipBox)}, t('tags.clip')) : null,
        clipBox));
    item.addEventListener('click', (e) => {
      if (e.target.closest('button, a, input')) return;
      selectTag(g.id, false);
    });
    return item;
  }

  function userName(u) {
    if (!u) return null;
    if (typeof u === 'object') return u.name || u.login || null;
    return String(u);
  }

  function clipState(g) {
    const c = g.clip;
    if (!c) return null;
    if (c.status === 'done' && c.url) return el('a', {href: c.url, class: 'clip-link', target: '_blank', rel: 'noopener'}, '▶ ', t('tags.clip_open'));
    if (c.status === 'failed') return el('span', {class: 'error-text small'}, t('tags.clip_failed'));
    if (Lab.ACTIVE_JOB.has(c.status)) return el('span', {class: 'muted small'}, t('tags.clip_working'));
    return null;
  }

  function selectTag(tagId, scroll) {
    for (const n of tagsBox.querySelectorAll('.tag.selected')) n.classList.remove('selected');
    const node = tagsBox.querySelector(`.tag[data-id="${CSS.escape(String(tagId))}"]`);
    const g = state.tags.find((x) => String(x.id) === String(tagId));
    if (g) tl.select('tags', g);
    if (!node) return;
    node.classList.add('selected');
    if (scroll) { node.scrollIntoView({block: 'nearest', behavior: 'smooth'}); if (g) player.seek(g.start_ms); }
  }

  async function deleteTag(g) {
    if (!confirm(t('tags.delete_confirm'))) return;
    try {
      await api('DELETE', `/tags/${encodeURIComponent(g.id)}`);
      state.tags = state.tags.filter((x) => x.id !== g.id);
      for (const c of state.candidates) if (String(c.tag_id) === String(g.id)) { c.status = 'open'; c.tag_id = null; }
      renderTags(); renderCandidates(); tl.redraw();
    } catch (_) { /* toast */ }
  }

  async function toggleHistory(g, item) {
    const open = item.querySelector('.tag-history');
    if (open) { open.remove(); return; }
    const box = el('div', {class: 'tag-history'}, el('p', {class: 'muted small'}, t('common.loading')));
    add(item, box);
    try {
      const r = await api('GET', `/tags/${encodeURIComponent(g.id)}/history`);
      clear(box);
      const entries = r.history || [];
      if (!entries.length) { add(box, el('p', {class: 'muted small'}, t('tags.history_empty'))); return; }
      add(box, el('ol', {class: 'history-list'}, entries.map((h) => el('li', null,
        el('span', {class: 'nowrap'}, fmtDate(h.at)), ' · ', el('strong', null, userName(h.user) || '—'), ' · ',
        t('history.' + h.action), historyDiff(h)))));
    } catch (_) { box.remove(); }
  }

  function historyDiff(h) {
    if (h.action !== 'update' || !h.before || !h.after) return null;
    const fields = ['start_ms', 'end_ms', 'step', 'category', 'severity', 'emotion', 'note', 'quote'];
    const show = (k, v) => v == null || v === '' ? '—' : k.endsWith('_ms') ? fmtMs(v) : k === 'category' ? Lab.categoryLabel(v, categories)
      : k === 'severity' ? t('severity.' + v) : k === 'emotion' ? t('emotion.' + v) : k === 'step' ? stepTitle(v) : String(v);
    const changed = fields.filter((k) => JSON.stringify(h.before[k]) !== JSON.stringify(h.after[k]));
    if (!changed.length) return null;
    return el('ul', {class: 'diff'}, changed.map((k) => el('li', null, t('field.' + k), ': ',
      el('del', null, show(k, h.before[k])), ' → ', el('ins', null, show(k, h.after[k])))));
  }

  async function makeClip(g, box) {
    try {
      const r = await api('POST', `/tags/${encodeURIComponent(g.id)}/clip`, {});
      state.clipJobs.set(String(r.job_id), String(g.id));
      g.clip = {status: 'queued', url: null};
      refill(box, Lab.progressBar({status: 'queued', progress: 0}), el('span', {class: 'muted small'}, t('tags.clip_working')));
    } catch (_) { /* toast */ }
  }

  function onClipJob(job) {
    const tagId = state.clipJobs.get(String(job.id)) || (job.kind === 'clip' && job.tag_id != null ? String(job.tag_id) : null);
    if (!tagId) return;
    const g = state.tags.find((x) => String(x.id) === tagId);
    if (!g) return;
    const node = tagsBox.querySelector(`.tag[data-id="${CSS.escape(tagId)}"] .clip-box`);
    if (job.status === 'done') {
      g.clip = {status: 'done', url: (g.clip && g.clip.url) || `/api/v1/clips/${encodeURIComponent(tagId)}.mp4`};
      state.clipJobs.delete(String(job.id));
      // The server's url wins when it has one.
      api('GET', `/sessions/${sid}/tags`, null, {quiet: true}).then((r) => {
        const fresh = (r.tags || []).find((x) => String(x.id) === tagId);
        if (fresh && fresh.clip && fresh.clip.url) { g.clip = fresh.clip; if (node) refill(node, clipState(g)); }
      }).catch(() => {});
      if (node) refill(node, clipState(g));
    } else if (job.status === 'failed' || job.status === 'cancelled') {
      g.clip = {status: 'failed', url: null};
      if (node) refill(node, clipState(g), job.message ? el('span', {class: 'small muted', title: job.message}, ' ', job.message) : null);
    } else if (node) {
      refill(node, Lab.progressBar(job), el('span', {class: 'muted small'}, Lab.fmtPercent(job.progress || 0)));
    }
  }

  // ================= tag form =================
  function createTagForm() {
    const stepOpts = [['', t('tags.no_step')], ...journeySteps.map((s, i) => [s.id, `${i + 1}. ${s.title}`])];
    // Steps seen in the timeline but absent from the definition still get an option.
    for (const s of state.steps) if (!stepOpts.some(([v]) => v === s.step)) stepOpts.push([s.step, s.title || s.step]);
    const start = el('input', {name: 'start', id: 'tag-start', required: true, size: 9, inputmode: 'decimal', pattern: '[0-9:.,]+', autocomplete: 'off'});
    const end = el('input', {name: 'end', id: 'tag-end', required: true, size: 9, inputmode: 'decimal', pattern: '[0-9:.,]+', autocomplete: 'off'});
    const step = Lab.select('step', stepOpts, '', {id: 'tag-step'});
    const category = Lab.select('category', [['', t('tags.choose')], ...categories.map((c) => [c.id, Lab.lang() === 'en' ? c.en : c.ru])], '', {id: 'tag-category', required: true});
    const severity = Lab.select('severity', Lab.SEVERITY.map((n) => [String(n), `${n} — ${t('severity.' + n)}`]), '2', {id: 'tag-severity'});
    const emotions = el('div', {class: 'radio-row', role: 'radiogroup', 'aria-label': t('field.emotion')},
      Lab.EMOTIONS.map((e) => el('label', {class: ['radio', 'emo-' + e]},
        el('input', {type: 'radio', name: 'emotion', value: e, checked: e === 'neutral'}), ' ', t('emotion.' + e))));
    const note = el('textarea', {name: 'note', id: 'tag-note', rows: '2', placeholder: t('tags.note_placeholder')});
    const quote = el('textarea', {name: 'quote', id: 'tag-quote', rows: '3', placeholder: t('tags.quote_placeholder')});
    const error = el('p', {class: 'form-error', hidden: true, role: 'alert'});
    const title = el('h2', null, t('tags.new'));
    const submit = el('button', {type: 'submit', class: 'btn btn-primary'}, t('common.save'));
    const field = (label, forId, control) => el('div', {class: 'field'}, el('label', {for: forId}, label), control);
    const useNow = (input) => el('button', {type: 'button', class: 'btn btn-icon', title: t('tags.use_current'),
      onclick: () => { setTime(input, player.time()); refreshQuote(); }}, t('tags.now'));
    const form = el('form', {id: 'tag-form', class: 'tag-form', novalidate: true},
      title,
      el('div', {class: 'field-row'},
        field(t('field.start'), 'tag-start', el('div', {class: 'inline'}, start, useNow(start))),
        field(t('field.end'), 'tag-end', el('div', {class: 'inline'}, end, useNow(end)))),
      field(t('field.step'), 'tag-step', step),
      field(t('field.category'), 'tag-category', category),
      el('div', {class: 'field-row'}, field(t('field.severity'), 'tag-severity', severity)),
      el('div', {class: 'field'}, el('span', {class: 'label'}, t('field.emotion')), emotions),
      field(t('field.note'), 'tag-note', note),
      field(t('field.quote'), 'tag-quote', quote),
      error,
      el('div', {class: 'row-actions'}, submit, el('button', {type: 'button', class: 'btn btn-ghost', onclick: () => close()}, t('common.cancel')),
        el('span', {class: 'muted small'}, t('tags.form_hint'))));
    const drawer = el('aside', {class: 'drawer', id: 'tag-editor', hidden: true, 'aria-label': t('tags.new')}, form);
    document.body.append(drawer);

    let editing = null;
    let quoteDirty = false;
    quote.addEventListener('input', () => { quoteDirty = true; });

    function setTime(input, ms) { input.value = fmtMs(ms); input.dataset.ms = String(Math.round(ms)); }
    function readTime(input) {
      // Keep the exact ms unless the user typed another value.
      if (input.dataset.ms && fmtMs(Number(input.dataset.ms)) === input.value) return Number(input.dataset.ms);
      return Lab.parseTime(input.value);
    }
    for (const input of [start, end]) input.addEventListener('change', () => { refreshQuote(); });
    function refreshQuote() {
      if (quoteDirty || editing) return;
      const s = readTime(start), e = readTime(end);
      if (isFinite(s) && isFinite(e) && e > s) quote.value = quoteFor(s, e);
    }
    function stepAt(ms) {
      const hits = state.steps.filter((s) => s.start_ms <= ms && ms < s.end_ms);
      return hits.length ? hits[hits.length - 1].step : '';
    }

    function open(tag, range) {
      editing = tag || null;
      quoteDirty = false;
      error.hidden = true;
      title.textContent = tag ? t('tags.edit') : t('tags.new');
      if (tag) {
        setTime(start, tag.start_ms); setTime(end, tag.end_ms);
        step.value = tag.step || '';
        category.value = tag.category || '';
        severity.value = String(tag.severity || 2);
        for (const r of form.querySelectorAll('[name=emotion]')) r.checked = r.value === (tag.emotion || 'neutral');
        note.value = tag.note || '';
        quote.value = tag.quote || '';
      } else {
        setTime(start, range.start); setTime(end, range.end);
        step.value = stepAt(range.start) || stepAt((range.start + range.end) / 2) || '';
        category.value = '';
        severity.value = '2';
        for (const r of form.querySelectorAll('[name=emotion]')) r.checked = r.value === 'neutral';
        note.value = '';
        quote.value = range.quote != null ? range.quote : quoteFor(range.start, range.end);
        quoteDirty = range.quote != null;
      }
      drawer.hidden = false;
      document.body.classList.add('drawer-open');
      (tag ? note : category).focus();
    }
    function close() {
      drawer.hidden = true;
      document.body.classList.remove('drawer-open');
      editing = null;
      if (document.activeElement && drawer.contains(document.activeElement)) document.activeElement.blur();
    }
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); close(); }
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const s = readTime(start), en = readTime(end);
      const fail = (msg, focus) => { error.textContent = msg; error.hidden = false; if (focus) focus.focus(); };
      if (!isFinite(s) || s < 0) return fail(t('tags.bad_time'), start);
      if (!isFinite(en) || en <= s) return fail(t('tags.bad_range'), end);
      if (!category.value) return fail(t('tags.need_category'), category);
      const emotion = (form.querySelector('[name=emotion]:checked') || {}).value || 'neutral';
      const body = {start_ms: Math.round(s), end_ms: Math.round(en), step: step.value || null, category: category.value,
        severity: Number(severity.value), emotion, note: note.value.trim() || null, quote: quote.value.trim() || null};
      submit.disabled = true;
      try {
        const tag = editing
          ? await api('PUT', `/tags/${encodeURIComponent(editing.id)}`, body)
          : await api('POST', `/sessions/${sid}/tags`, body);
        upsertTag(tag);
        state.markIn = state.markOut = null; showMarks();
        close();
        selectTag(tag.id, false);
        Lab.toast(t('tags.saved'), 'ok', 2000);
      } catch (err) {
        fail(err.message);
      } finally { submit.disabled = false; }
    });
    return {open, close, get isOpen() { return !drawer.hidden; }};
  }

  function openTagFromMarks() {
    if (!canTag) return;
    const now = player.time();
    const dur = player.duration() || state.durationMs || Infinity;
    const sel = selectedWordRange();
    let range;
    if (state.markIn != null && state.markOut != null) range = {start: Math.min(state.markIn, state.markOut), end: Math.max(state.markIn, state.markOut)};
    else if (sel) range = sel;
    else if (state.markIn != null) range = {start: state.markIn, end: now > state.markIn ? now : state.markIn + 5000};
    else if (state.markOut != null) range = {start: Math.max(0, state.markOut - 5000), end: state.markOut};
    else range = {start: Math.max(0, now - 5000), end: Math.min(dur, now + 5000)};
    if (range.end <= range.start) range.end = range.start + 1000;
    player.pause();
    tagForm.open(null, range);
  }

  function showMarks() {
    const m = player.marks;
    clear(m);
    if (state.markIn != null || state.markOut != null) {
      add(m, el('span', {class: 'mark'}, 'I ', fmtMs(state.markIn)), ' → ', el('span', {class: 'mark'}, 'O ', fmtMs(state.markOut)),
        el('button', {type: 'button', class: 'btn btn-icon', title: t('player.clear_marks'), onclick: () => { state.markIn = state.markOut = null; showMarks(); }}, '×'));
    }
    tl.redraw();
  }

  // ================= keyboard =================
  function typing(target) {
    if (!target || !target.closest) return false;
    if (target.matches('input[type=range], input[type=checkbox], input[type=radio], input[type=button], input[type=submit]')) return false;
    return !!target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]');
  }
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e.target)) return;
    if (document.querySelector('.modal-backdrop')) return;
    // e.code keeps the shortcuts on the same keys in the Russian layout.
    const code = e.code;
    let handled = true;
    if (code === 'Space' || e.key === ' ') player.toggle();
    else if (code === 'KeyI') { state.markIn = player.time(); if (state.markOut != null && state.markOut <= state.markIn) state.markOut = null; showMarks(); }
    else if (code === 'KeyO') { state.markOut = player.time(); if (state.markIn != null && state.markIn >= state.markOut) state.markIn = null; showMarks(); }
    else if (code === 'KeyT') openTagFromMarks();
    else if (code === 'ArrowLeft') player.seek(player.time() - 5000);
    else if (code === 'ArrowRight') player.seek(player.time() + 5000);
    else if (code === 'Comma' && !e.shiftKey) { player.pause(); player.seek(player.time() - 1000 / 30); }
    else if (code === 'Period' && !e.shiftKey) { player.pause(); player.seek(player.time() + 1000 / 30); }
    else if (code === 'KeyJ' || code === 'KeyL') {
      const cur = SPEEDS.indexOf(player.rate());
      const i = cur < 0 ? 2 : Math.max(0, Math.min(SPEEDS.length - 1, cur + (code === 'KeyJ' ? -1 : 1)));
      player.setRate(SPEEDS[i]);
    } else if (e.key === '?' || (code === 'Slash' && e.shiftKey)) showHelp();
    else if (code === 'Escape') { state.markIn = state.markOut = null; showMarks(); }
    else handled = false;
    if (handled) e.preventDefault();
  });

  function showHelp() {
    const keys = [['Space', 'keys.play'], ['I', 'keys.in'], ['O', 'keys.out'], ['T', 'keys.tag'], ['← / →', 'keys.seek'],
      [', / .', 'keys.frame'], ['J / L', 'keys.speed'], ['Esc', 'keys.escape'], ['Ctrl+Enter', 'keys.save'], ['?', 'keys.help']];
    Lab.modal(t('keys.title'), el('div', null,
      el('table', {class: 'keys'}, el('tbody', null, keys.map(([k, d]) => el('tr', null, el('td', null, el('kbd', null, k)), el('td', null, t(d)))))),
      el('p', {class: 'muted small'}, t('keys.note'))), {id: 'help-overlay'});
  }

  // ================= live updates =================
  Lab.onJob((job) => {
    if (job.kind === 'clip' || state.clipJobs.has(String(job.id))) { onClipJob(job); return; }
    if (String(job.session_id) !== String(id)) return;
    const node = document.getElementById('analysis-status');
    if (node) node.textContent = analysisText(job);
    if (job.status === 'done') Lab.toast(t('session.analysis_done'), 'ok', 8000);
  });
});
