// The frame of every lab-web page: the page header (navigation, user,
// language switch) and the start-up that loads the user before the page runs.
// Each page script is an ES module that imports what it needs from the shared
// modules (dom, i18n, format, api, widgets, roles, jobs, labels) and calls
// `runPage(init)`; <body data-page> names the page and <body data-id> its object.

import {el, clear} from './dom.js';
import {t, lang, setLang} from './i18n.js';
import {api, ApiError, loadMe, loginUrl} from './api.js';
import {RIGHTS, setUser} from './roles.js';
import {toast} from './widgets.js';

function renderHeader(me) {
  let header = document.getElementById('app-header');
  if (!header) { header = el('header', {id: 'app-header'}); document.body.prepend(header); }
  clear(header);
  const page = document.body.dataset.page;
  const nav = el('nav', {class: 'main-nav', 'aria-label': t('nav.label')});
  const link = (href, key, name) => el('a', {href, class: page === name ? 'active' : null,
    'aria-current': page === name ? 'page' : null}, t(key));
  if (me && me.user.role === 'observer') {
    nav.append(link('/live', 'nav.live', 'live'));
  } else if (me) {
    nav.append(link('/', 'nav.sessions', 'sessions'), link('/findings', 'nav.findings', 'findings'));
    if (RIGHTS.live.includes(me.user.role)) nav.append(link('/live', 'nav.live', 'live'));
    // Transcript search reads raw recordings: every role but the viewer.
    if (RIGHTS.raw.includes(me.user.role)) nav.append(link('/search', 'nav.search', 'search'));
    if (RIGHTS.edit_setups.includes(me.user.role)) nav.append(link('/setups', 'nav.setups', 'setups'));
    if (me.user.role === 'admin') nav.append(link('/admin', 'nav.admin', 'admin'));
  }
  const langSel = el('div', {class: 'lang-switch', role: 'group', 'aria-label': t('nav.language')},
    ['ru', 'en'].map((l) => el('button', {type: 'button', class: lang() === l ? 'active' : null,
      'aria-pressed': String(lang() === l), dataset: {lang: l}, onclick: () => setLang(l)}, l.toUpperCase())));
  const right = el('div', {class: 'header-right'}, langSel);
  if (me) {
    right.prepend(
      el('span', {class: 'user-name', title: me.user.login},
        me.user.name || me.user.login, ' ', el('span', {class: 'role-badge'}, t('role.' + me.user.role))),
      el('button', {type: 'button', id: 'logout', class: 'btn btn-small btn-ghost', onclick: logout}, t('nav.logout')));
  }
  header.append(el('a', {href: '/', class: 'brand'}, el('span', {class: 'brand-mark'}, 'UX'), t('app.title')), nav, right);
}

async function logout() {
  try { await api('POST', '/logout', {}, {noRedirect: true, quiet: [401]}); } catch (_) { /* go anyway */ }
  location.assign('/login');
}

function main() {
  let m = document.getElementById('main');
  if (!m) { m = el('main', {id: 'main'}); document.body.appendChild(m); }
  return m;
}

export function setTitle(text) { document.title = text ? `${text} — ${t('app.title')}` : t('app.title'); }

/**
 * Runs the page: init({id, main, me}) once the user is known (the log-in
 * page gets no `me`). Modules run after the document is parsed, so the body
 * is there already.
 */
export async function runPage(init) {
  document.documentElement.lang = lang();
  const name = document.body.dataset.page || 'sessions';
  const id = document.body.dataset.id || '';
  const ctx = {id, main: main()};
  if (name === 'login') {
    renderHeader(null);
    await init(ctx);
    return;
  }
  let me;
  try { me = await loadMe(); } catch (e) { renderHeader(null); main().append(el('p', {class: 'empty'}, e.message)); return; }
  if (!me) { location.assign(loginUrl()); return; }
  setUser(me.user);
  // An observer has the observation room only.
  if (me.user.role === 'observer' && name !== 'live') { location.replace('/live'); return; }
  renderHeader(me);
  try { await init({...ctx, me}); } catch (e) {
    console.error(e);
    if (!(e instanceof ApiError)) toast(e.message || String(e));
    // A page that could not even start (e.g. 404 for its object) says why in place.
    if (!ctx.main.children.length) ctx.main.append(el('p', {class: 'empty page-error'}, e.message || String(e)));
  }
}
