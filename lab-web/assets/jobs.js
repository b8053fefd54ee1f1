// The job event stream (server-sent events): one EventSource per page,
// shared by every listener.

import {API} from './api.js';

export const ACTIVE_JOB = new Set(['queued', 'running']);

const jobListeners = new Set();
let source = null;

/** Calls fn with every job update; returns a function that stops it. */
export function watchJobs(fn) {
  jobListeners.add(fn);
  if (!source && typeof EventSource !== 'undefined') {
    source = new EventSource(API + '/jobs/events', {withCredentials: true});
    source.addEventListener('job', (ev) => {
      let job;
      try { job = JSON.parse(ev.data); } catch (_) { return; }
      for (const l of jobListeners) { try { l(job); } catch (e) { console.error(e); } }
    });
    // EventSource reconnects by itself; nothing to do on error.
  }
  return () => jobListeners.delete(fn);
}
