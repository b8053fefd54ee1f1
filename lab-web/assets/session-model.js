// The session page's shared state: what the API returned for one session,
// the user's rights on it, the journey's steps, and the mutable review state
// (words, candidates, tags, in/out marks) that the page's parts read and
// change. The parts themselves (player, transcript, timeline, candidates,
// tags, tag form) are attached by session.js as it creates them, so they can
// call each other at event time without importing each other.

import {can} from './roles.js';

/**
 * detail: GET /sessions/{id}; categories: the tag categories. session.js sets
 * timelineData (GET /sessions/{id}/timeline, or {error}) once it is loaded.
 */
export function createModel({id, detail, categories}) {
  const journeySteps = (detail.journey && detail.journey.steps) || [];
  const stepIndex = new Map(journeySteps.map((s, i) => [s.id, i]));
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
  return {
    id,
    sid: encodeURIComponent(id),
    detail,
    categories,
    canRaw: can('raw'),
    canTag: can('tag'),
    journeySteps,
    stepIndex,
    state,
    timelineData: null,
    // The page's parts, set by session.js.
    player: null, transcript: null, tl: null, candidates: null, tags: null, tagForm: null,
    stepTitle(stepId) {
      if (!stepId) return '—';
      const s = journeySteps.find((x) => x.id === stepId);
      return s ? s.title : stepId;
    },
    /** The (last) step interval containing session time ms, or ''. */
    stepAt(ms) {
      const hits = state.steps.filter((s) => s.start_ms <= ms && ms < s.end_ms);
      return hits.length ? hits[hits.length - 1].step : '';
    },
  };
}
