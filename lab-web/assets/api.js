// The API client: cookie + CSRF header, 401 -> log-in page, errors as
// toasts unless asked to stay quiet.

import {t} from './i18n.js';
import {toast} from './widgets.js';

export const API = '/api/v1';
let mePromise = null;
let csrf = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || String(status));
    this.status = status; this.code = code;
  }
}

export function loginUrl() {
  const next = location.pathname + location.search + location.hash;
  return '/login?next=' + encodeURIComponent(next);
}

async function getCsrf(force) {
  if (csrf && !force) return csrf;
  if (force) mePromise = null;
  const me = await loadMe();
  return me ? me.csrf : null;
}

/**
 * api('POST', '/sessions/1/analyze', {}) -> parsed JSON (null for 204).
 * opts: {quiet: [status...] | true} suppresses the toast for those statuses,
 * {noRedirect: true} keeps a 401 from leaving the page, {raw: true} returns the Response.
 */
export async function api(method, path, body, opts = {}) {
  const url = path.startsWith('/api/') ? path : API + path;
  const headers = {'Accept': 'application/json'};
  if (body !== undefined && body !== null) headers['Content-Type'] = 'application/json';
  const unsafe = !['GET', 'HEAD'].includes(method);
  if (unsafe && opts.csrf !== false) {
    const token = await getCsrf();
    if (token) headers['X-CSRF-Token'] = token;
  }
  let res;
  try {
    res = await fetch(url, {
      method, headers, credentials: 'same-origin',
      body: body !== undefined && body !== null ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    if (!opts.quiet) toast(t('error.network'));
    throw new ApiError(0, 'network', t('error.network'));
  }
  if (res.status === 401 && !opts.noRedirect) {
    location.assign(loginUrl());
    throw new ApiError(401, 'unauthorized', t('error.unauthorized'));
  }
  if (!res.ok) {
    let info = {};
    try { info = await res.json(); } catch (_) { /* not JSON */ }
    // A stale token (server restarted, logged in elsewhere): fetch a fresh one and try once more.
    if (res.status === 403 && info.error === 'csrf' && unsafe && !opts.retried) {
      await getCsrf(true);
      return api(method, path, body, {...opts, retried: true});
    }
    const message = info.message || t('error.status', {status: res.status});
    const quiet = opts.quiet === true || (Array.isArray(opts.quiet) && opts.quiet.includes(res.status));
    if (!quiet) toast(message);
    throw new ApiError(res.status, info.error || 'http_' + res.status, message);
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  if (type.includes('json')) return res.json();
  return res.text();
}

/** GET /me once per page; null when not logged in (no redirect). */
export function loadMe() {
  if (!mePromise) {
    mePromise = api('GET', '/me', null, {noRedirect: true, quiet: [401]})
      .then((me) => { csrf = me.csrf; return me; })
      .catch((e) => { mePromise = null; if (e.status === 401) return null; throw e; });
  }
  return mePromise;
}

export function setCsrf(token) { csrf = token; }
