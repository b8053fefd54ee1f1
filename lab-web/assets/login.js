// Log-in page: POST /api/v1/login, then back to `next` (a local path only).

import {el, add} from './dom.js';
import {t} from './i18n.js';
import {api, loadMe, setCsrf} from './api.js';
import {runPage, setTitle} from './app.js';

runPage(async ({main}) => {
  setTitle(t('login.title'));

  const params = new URLSearchParams(location.search);
  const next = params.get('next');
  // Only same-site paths: "/x" but not "//evil.example" or "/\evil".
  const target = next && /^\/(?!\/|\\)/.test(next) && !next.startsWith('/login') ? next : '/';

  // Already logged in? Go straight on.
  try { if (await loadMe()) { location.replace(target); return; } } catch (_) { /* show the form */ }

  const error = el('p', {class: 'form-error', role: 'alert', hidden: true});
  const login = el('input', {name: 'login', id: 'login-login', autocomplete: 'username', required: true, autofocus: true});
  const password = el('input', {name: 'password', id: 'login-password', type: 'password', autocomplete: 'current-password', required: true});
  const submit = el('button', {type: 'submit', class: 'btn btn-primary'}, t('login.submit'));
  const form = el('form', {id: 'login-form', class: 'login-form', novalidate: true},
    el('h1', null, t('login.title')),
    el('p', {class: 'muted'}, t('login.lead')),
    el('label', {for: 'login-login'}, t('login.login')), login,
    el('label', {for: 'login-password'}, t('login.password')), password,
    error, submit);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    if (!login.value.trim() || !password.value) {
      error.textContent = t('login.empty');
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    try {
      const r = await api('POST', '/login', {login: login.value.trim(), password: password.value},
        {csrf: false, noRedirect: true, quiet: true});
      if (r && r.csrf) setCsrf(r.csrf);
      location.assign(target);
    } catch (err) {
      error.textContent = err.status === 401 ? t('login.bad') : (err.message || t('error.network'));
      error.hidden = false;
      password.value = '';
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });

  add(main, el('div', {class: 'login-wrap'}, form));
  login.focus();
});
