// Administration (/admin): users and roles, API tokens for the findings
// overlay, analysis/clip jobs (live) and the audit log.

import {el, add, refill} from './dom.js';
import {t} from './i18n.js';
import {fmtDate, fmtPercent, qs} from './format.js';
import {toast, select, modal, progressBar} from './widgets.js';
import {api} from './api.js';
import {watchJobs, ACTIVE_JOB} from './jobs.js';
import {runPage, setTitle} from './app.js';

runPage(async ({main, me}) => {
  setTitle(t('admin.title'));
  if (me.user.role !== 'admin') {
    add(main, el('p', {class: 'empty'}, t('admin.forbidden')));
    return;
  }
  const ROLES = ['admin', 'researcher', 'operator', 'viewer'];
  const roleOpts = ROLES.map((r) => [r, t('role.' + r)]);

  const tabs = [['users', 'admin.users'], ['tokens', 'admin.tokens'], ['uploads', 'admin.uploads'], ['jobs', 'admin.jobs'], ['audit', 'admin.audit']];
  const sections = {};
  const nav = el('nav', {class: 'subnav'}, tabs.map(([k, label]) => el('a', {href: '#' + k}, t(label))));
  add(main, el('div', {class: 'page-head'}, el('h1', null, t('admin.title')), nav));
  for (const [k, label] of tabs) {
    sections[k] = el('section', {class: 'panel admin-section', id: k, 'aria-labelledby': k + '-h'}, el('h2', {id: k + '-h'}, t(label)));
    add(main, sections[k]);
  }

  // ================= users =================
  const usersBox = el('div');
  const addUser = el('form', {class: 'inline-form add-user', id: 'add-user'},
    el('input', {name: 'login', placeholder: t('admin.login'), required: true, size: 12, autocomplete: 'off', 'aria-label': t('admin.login')}),
    el('input', {name: 'name', placeholder: t('admin.name'), size: 18, 'aria-label': t('admin.name')}),
    el('input', {name: 'password', type: 'password', placeholder: t('admin.password'), required: true, minlength: '8', size: 14, autocomplete: 'new-password', 'aria-label': t('admin.password')}),
    select('role', roleOpts, 'researcher', {'aria-label': t('admin.role')}),
    el('button', {type: 'submit', class: 'btn btn-primary'}, t('admin.add_user')));
  sections.users.append(addUser, usersBox);
  addUser.addEventListener('submit', async (e) => {
    e.preventDefault();
    const fd = new FormData(addUser);
    const body = {login: String(fd.get('login')).trim(), name: String(fd.get('name')).trim() || String(fd.get('login')).trim(),
      password: String(fd.get('password')), role: String(fd.get('role'))};
    if (!body.login || !body.password) return;
    try { await api('POST', '/users', body); addUser.reset(); toast(t('admin.user_added'), 'ok', 2500); loadUsers(); } catch (_) { /* toast */ }
  });

  async function loadUsers() {
    let users = [];
    try { users = (await api('GET', '/users')).users || []; } catch (_) { return; }
    const body = el('tbody', null, users.map((u) => {
      const role = select('role', roleOpts, u.role, {'aria-label': t('admin.role'), disabled: u.id === me.user.id});
      role.addEventListener('change', async () => {
        try { await api('PATCH', `/users/${encodeURIComponent(u.id)}`, {role: role.value}); toast(t('admin.saved'), 'ok', 2000); } catch (_) { role.value = u.role; }
      });
      const toggle = el('button', {type: 'button', class: ['btn', 'btn-small', u.disabled ? 'btn-ok' : 'btn-ghost'], disabled: u.id === me.user.id,
        onclick: async () => {
          try { await api('PATCH', `/users/${encodeURIComponent(u.id)}`, {disabled: !u.disabled}); loadUsers(); } catch (_) { /* toast */ }
        }}, u.disabled ? t('admin.enable') : t('admin.disable'));
      const pw = el('button', {type: 'button', class: 'btn btn-small btn-ghost', onclick: () => setPassword(u)}, t('admin.set_password'));
      return el('tr', {class: ['user-row', u.disabled && 'disabled'], dataset: {id: u.id}},
        el('td', null, el('code', null, u.login)), el('td', null, u.name || ''), el('td', null, role),
        el('td', null, u.disabled ? el('span', {class: 'badge badge-muted'}, t('admin.disabled')) : el('span', {class: 'badge badge-ok'}, t('admin.active'))),
        el('td', {class: 'nowrap'}, u.created_at ? fmtDate(u.created_at) : '—'),
        el('td', {class: 'actions nowrap'}, toggle, pw));
    }));
    refill(usersBox, el('div', {class: 'table-scroll'}, el('table', {class: 'data'},
      el('thead', null, el('tr', null, ['admin.login', 'admin.name', 'admin.role', 'admin.status', 'col.created', 'col.actions'].map((k) => el('th', {scope: 'col'}, t(k))))),
      body)));
  }

  function setPassword(u) {
    const input = el('input', {type: 'password', name: 'password', minlength: '8', required: true, autocomplete: 'new-password'});
    const form = el('form', {class: 'stack'}, el('label', null, t('admin.new_password_for', {login: u.login})), input,
      el('div', {class: 'row-actions'}, el('button', {type: 'submit', class: 'btn btn-primary'}, t('common.save'))));
    const m = modal(t('admin.set_password'), form);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (input.value.length < 8) { input.focus(); return; }
      try { await api('PATCH', `/users/${encodeURIComponent(u.id)}`, {password: input.value}); m.close(); toast(t('admin.saved'), 'ok', 2000); } catch (_) { /* toast */ }
    });
    input.focus();
  }

  // ================= tokens =================
  const tokensBox = el('div');
  const newToken = el('div', {class: 'new-token', id: 'new-token'});
  const addToken = el('form', {class: 'inline-form', id: 'add-token'},
    el('input', {name: 'name', placeholder: t('admin.token_name'), required: true, size: 28, 'aria-label': t('admin.token_name')}),
    el('select', {name: 'scope', 'aria-label': t('admin.scope')},
      ['overlay', 'viewer', 'station', 'worker'].map((s) => el('option', {value: s}, t('admin.scope_' + s)))),
    el('button', {type: 'submit', class: 'btn btn-primary'}, t('admin.create_token')));
  sections.tokens.append(el('p', {class: 'muted small'}, t('admin.tokens_lead')), addToken, newToken, tokensBox);
  addToken.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = addToken.elements.name.value.trim();
    const scope = addToken.elements.scope.value;
    if (!name) return;
    try {
      const r = await api('POST', '/tokens', {name, scope});
      addToken.reset();
      if (scope === 'station') showStationToken(r.token);
      else if (scope === 'worker') showWorkerToken(r.token);
      else showToken(r.token, name);
      loadTokens();
    } catch (_) { /* toast */ }
  });

  const copy = (text) => el('button', {type: 'button', class: 'btn btn-small', onclick: async (e) => {
    try { await navigator.clipboard.writeText(text); e.target.textContent = t('admin.copied'); } catch (_) { toast(t('admin.copy_failed')); }
  }}, t('admin.copy'));

  function showToken(token, name) {
    const origin = location.origin;
    const snippet = `<script src="${origin}/overlay.js" data-lab-url="${origin}" data-token="${token}"></script>`;
    const code = `(function(){window.LAB_OVERLAY={url:${JSON.stringify(origin)},token:${JSON.stringify(token)}};` +
      `var s=document.createElement('script');s.src=${JSON.stringify(origin + '/overlay.js')};document.body.appendChild(s);})();`;
    const bookmarklet = el('a', {class: 'btn bookmarklet', title: t('admin.bookmarklet_hint')}, t('admin.bookmarklet', {name}));
    // Built here from our own origin and the token; never from untrusted text.
    bookmarklet.setAttribute('href', 'javascript:' + encodeURIComponent(code));
    bookmarklet.addEventListener('click', (e) => { e.preventDefault(); toast(t('admin.bookmarklet_hint'), 'info'); });
    refill(newToken, el('div', {class: 'token-box'},
      el('p', null, el('strong', null, t('admin.token_once'))),
      el('div', {class: 'copy-row'}, el('code', {class: 'token-value', id: 'token-value'}, token), copy(token)),
      el('p', {class: 'small'}, t('admin.snippet')),
      el('div', {class: 'copy-row'}, el('textarea', {class: 'snippet', id: 'token-snippet', readOnly: true, rows: '2'}, snippet), copy(snippet)),
      el('p', {class: 'small'}, t('admin.bookmarklet_lead')), bookmarklet));
  }

  function showStationToken(token) {
    const command = `lab-recorder upload SESSION_FOLDER --server ${location.origin} --station-token-file station.token`;
    refill(newToken, el('div', {class: 'token-box'},
      el('p', null, el('strong', null, t('admin.token_once'))),
      el('div', {class: 'copy-row'}, el('code', {class: 'token-value', id: 'token-value'}, token), copy(token)),
      el('p', {class: 'small'}, t('admin.station_lead')),
      el('div', {class: 'copy-row'}, el('code', {id: 'station-command'}, command), copy(command))));
  }

  function showWorkerToken(token) {
    const command = `lab-analyze worker --server ${location.origin} --worker-token ${token}`;
    refill(newToken, el('div', {class: 'token-box'},
      el('p', null, el('strong', null, t('admin.token_once'))),
      el('div', {class: 'copy-row'}, el('code', {class: 'token-value', id: 'token-value'}, token), copy(token)),
      el('p', {class: 'small'}, t('admin.worker_lead')),
      el('div', {class: 'copy-row'}, el('code', {id: 'worker-command'}, command), copy(command))));
  }

  async function loadTokens() {
    let tokens = [];
    try { tokens = (await api('GET', '/tokens')).tokens || []; } catch (_) { return; }
    if (!tokens.length) { refill(tokensBox, el('p', {class: 'empty'}, t('admin.no_tokens'))); return; }
    refill(tokensBox, el('table', {class: 'data'},
      el('thead', null, el('tr', null, ['admin.token_name', 'admin.scope', 'col.created', 'admin.last_used', 'col.actions'].map((k) => el('th', {scope: 'col'}, t(k))))),
      el('tbody', null, tokens.map((tk) => el('tr', {class: 'token-row', dataset: {id: tk.id, scope: tk.scope}},
        el('td', null, tk.name || '—'), el('td', null, t('admin.scope_' + (tk.scope || 'overlay'))),
        el('td', {class: 'nowrap'}, fmtDate(tk.created_at)),
        el('td', {class: 'nowrap'}, tk.last_used_at ? fmtDate(tk.last_used_at) : '—'),
        el('td', null, el('button', {type: 'button', class: 'btn btn-small btn-danger', onclick: async () => {
          if (!confirm(t('admin.delete_token_confirm', {name: tk.name || tk.id}))) return;
          try { await api('DELETE', `/tokens/${encodeURIComponent(tk.id)}`); loadTokens(); } catch (_) { /* toast */ }
        }}, t('common.delete'))))))));
  }

  // ================= jobs =================
  const jobsBox = el('div');
  const workersBox = el('div', {class: 'workers-box'});
  const activeOnly = el('input', {type: 'checkbox', name: 'active', checked: true});
  sections.jobs.append(workersBox, el('label', {class: 'check'}, activeOnly, ' ', t('admin.active_only')), jobsBox);

  async function loadWorkers() {
    let list = [];
    try { list = (await api('GET', '/workers')).workers || []; } catch (_) { return; }
    refill(workersBox, el('h3', null, t('admin.workers')), el('p', {class: 'small muted'}, t('admin.workers_lead')),
      list.length ? el('div', {class: 'table-scroll'}, el('table', {class: 'data workers-table'},
        el('thead', null, el('tr', null, ['admin.worker', 'admin.capabilities', 'admin.running', 'admin.last_seen'].map((k) => el('th', {scope: 'col'}, t(k))))),
        el('tbody', null, list.map((w) => el('tr', {class: 'worker-row'},
          el('td', null, el('code', null, w.name)),
          el('td', null, w.capabilities || '—'),
          el('td', null, String(w.running)),
          el('td', {class: 'nowrap'}, fmtDate(w.last_seen_at)))))))
        : el('p', {class: 'empty'}, t('admin.no_workers')));
  }
  activeOnly.addEventListener('change', loadJobs);
  const jobs = new Map();

  async function loadJobs() {
    try {
      const r = await api('GET', '/jobs' + (activeOnly.checked ? '?active=1' : ''));
      jobs.clear();
      for (const j of r.jobs || []) jobs.set(String(j.id), j);
    } catch (_) { /* toast */ }
    renderJobs();
    loadWorkers();
  }

  function renderJobs() {
    const list = [...jobs.values()].filter((j) => !activeOnly.checked || ACTIVE_JOB.has(j.status))
      .sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
    if (!list.length) { refill(jobsBox, el('p', {class: 'empty'}, t('admin.no_jobs'))); return; }
    refill(jobsBox, el('div', {class: 'table-scroll'}, el('table', {class: 'data jobs-table'},
      el('thead', null, el('tr', null, ['admin.job', 'admin.kind', 'col.session', 'admin.status', 'admin.progress', 'admin.worker', 'col.created', 'admin.finished', 'col.actions'].map((k) => el('th', {scope: 'col'}, t(k))))),
      el('tbody', null, list.map((j) => el('tr', {class: 'job-row', dataset: {id: j.id}},
        el('td', null, el('code', null, String(j.id))),
        el('td', null, t('job.' + j.kind)),
        el('td', null, j.session_id != null ? el('a', {href: '/sessions/' + encodeURIComponent(j.session_id)}, String(j.session_id)) : '—',
          j.tag_id != null ? el('span', {class: 'muted small'}, ' · ', t('admin.tag_n', {id: j.tag_id})) : null),
        el('td', null, el('span', {class: ['badge', 'badge-analysis-' + j.status]}, t('analysis.' + j.status)),
          j.message ? el('div', {class: 'small muted job-message', title: j.message}, j.message) : null),
        el('td', {class: 'progress-cell'}, progressBar(j), el('span', {class: 'small muted'}, [j.stage, fmtPercent(j.progress || 0)].filter(Boolean).join(' · '))),
        el('td', {class: 'small'}, j.worker ? el('code', null, j.worker) : '—',
          j.attempts > 1 ? el('div', {class: 'small muted'}, t('admin.attempt_n', {n: j.attempts})) : null,
          j.requires ? el('div', {class: 'small muted'}, t('admin.requires', {cap: j.requires})) : null),
        el('td', {class: 'nowrap'}, fmtDate(j.created_at)),
        el('td', {class: 'nowrap'}, j.finished_at ? fmtDate(j.finished_at) : '—'),
        el('td', {class: 'actions'},
          ACTIVE_JOB.has(j.status) ? el('button', {type: 'button', class: 'btn btn-small', onclick: () => jobAction(j, 'cancel')}, t('jobs.cancel')) : null,
          j.status === 'failed' || j.status === 'cancelled' || j.status === 'dead' ? el('button', {type: 'button', class: 'btn btn-small btn-ghost', onclick: () => jobAction(j, 'retry')}, t('jobs.retry')) : null)))))));
  }

  async function jobAction(j, kind) {
    try {
      const r = await api('POST', `/jobs/${encodeURIComponent(j.id)}/${kind}`, {});
      if (r && r.id != null) jobs.set(String(r.id), r);
      if (kind === 'retry') await loadJobs(); else renderJobs();
    } catch (_) { /* toast */ }
  }

  let jobsTimer = null;
  watchJobs((j) => {
    jobs.set(String(j.id), j);
    clearTimeout(jobsTimer);
    jobsTimer = setTimeout(renderJobs, 150);
  });

  // ================= audit =================
  const auditBody = el('tbody');
  const more = el('button', {type: 'button', class: 'btn btn-ghost', hidden: true}, t('admin.older'));
  sections.audit.append(el('div', {class: 'table-scroll'}, el('table', {class: 'data audit-table'},
    el('thead', null, el('tr', null, ['admin.at', 'admin.user', 'admin.action', 'admin.object', 'admin.detail'].map((k) => el('th', {scope: 'col'}, t(k))))),
    auditBody)), more);
  const PAGE = 50;
  let before = null;
  async function loadAudit() {
    let entries = [];
    try { entries = (await api('GET', '/audit' + qs({limit: PAGE, before}))).entries || []; } catch (_) { return; }
    for (const a of entries) {
      add(auditBody, el('tr', {class: 'audit-row', dataset: {id: a.id}},
        el('td', {class: 'nowrap'}, fmtDate(a.at)),
        el('td', null, typeof a.user === 'object' && a.user ? (a.user.login || a.user.name) : (a.user ?? '—')),
        el('td', null, el('code', null, a.action || '')),
        el('td', null, a.object == null ? '—' : typeof a.object === 'object' ? JSON.stringify(a.object) : String(a.object)),
        el('td', {class: 'text-cell small'}, a.detail == null ? '' : typeof a.detail === 'object' ? JSON.stringify(a.detail) : String(a.detail))));
    }
    if (!auditBody.children.length) add(auditBody, el('tr', null, el('td', {colspan: '5', class: 'empty'}, t('admin.no_audit'))));
    if (entries.length) before = entries[entries.length - 1].id;
    more.hidden = entries.length < PAGE;
  }
  more.addEventListener('click', loadAudit);

  // ================= uploads from stations =================
  const uploadsBox = el('div');
  sections.uploads.append(el('p', {class: 'muted small'}, t('admin.uploads_lead')), uploadsBox);
  const mib = (b) => `${((b || 0) / (1 << 20)).toFixed(1)} MiB`;
  async function loadUploads() {
    let ups = [];
    try { ups = (await api('GET', '/uploads')).uploads || []; } catch (_) { return; }
    if (!ups.length) { refill(uploadsBox, el('p', {class: 'empty'}, t('admin.no_uploads'))); return; }
    refill(uploadsBox, el('table', {class: 'data uploads-table'},
      el('thead', null, el('tr', null, ['admin.station', 'admin.session', 'admin.upload_state', 'admin.upload_bytes', 'col.created', 'admin.upload_done']
        .map((k) => el('th', {scope: 'col'}, t(k))))),
      el('tbody', null, ups.map((u) => el('tr', {class: 'upload-row', dataset: {id: u.id, status: u.status}},
        el('td', null, u.station),
        el('td', null, u.assigned_id && u.assigned_id !== u.session_id ? `${u.session_id} → ${u.assigned_id}` : u.session_id),
        el('td', null, t('admin.upload_' + u.status) + (u.withdrawn ? ' · ' + t('admin.upload_withdrawn') : '')),
        // bytes_written counts chunks as they were accepted (a server stop can
        // leave one uncounted): an imported upload holds every byte.
        el('td', {class: 'num'}, `${mib(u.status === 'imported' ? u.total_bytes : Math.min(u.bytes_written, u.total_bytes))} / ${mib(u.total_bytes)}`),
        el('td', {class: 'nowrap'}, fmtDate(u.created_at)),
        el('td', {class: 'nowrap'}, u.imported_at ? fmtDate(u.imported_at) : '—'))))));
  }

  await Promise.all([loadUsers(), loadTokens(), loadUploads(), loadJobs(), loadAudit()]);
});
