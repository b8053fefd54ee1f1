// The session page's keyboard: Space play/pause, I/O marks, T tag, arrows
// seek, , / . frame step, J / L speed, ? help, Esc clear marks; typing in a
// field or an open modal takes precedence. And the help overlay listing them.

import {el} from './dom.js';
import {t} from './i18n.js';
import {modal} from './widgets.js';
import {SPEEDS} from './session-player.js';

function typing(target) {
  if (!target || !target.closest) return false;
  if (target.matches('input[type=range], input[type=checkbox], input[type=radio], input[type=button], input[type=submit]')) return false;
  return !!target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]');
}

/** Binds the review shortcuts for page (the session model) on the document. */
export function bindKeys(page) {
  const {state} = page;
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e.target)) return;
    if (document.querySelector('.modal-backdrop')) return;
    // e.code keeps the shortcuts on the same keys in the Russian layout.
    const code = e.code;
    let handled = true;
    if (code === 'Space' || e.key === ' ') page.player.toggle();
    else if (code === 'KeyI') { state.markIn = page.player.time(); if (state.markOut != null && state.markOut <= state.markIn) state.markOut = null; page.tagForm.showMarks(); }
    else if (code === 'KeyO') { state.markOut = page.player.time(); if (state.markIn != null && state.markIn >= state.markOut) state.markIn = null; page.tagForm.showMarks(); }
    else if (code === 'KeyT') page.tagForm.openFromMarks();
    else if (code === 'ArrowLeft') page.player.seek(page.player.time() - 5000);
    else if (code === 'ArrowRight') page.player.seek(page.player.time() + 5000);
    else if (code === 'Comma' && !e.shiftKey) { page.player.pause(); page.player.seek(page.player.time() - 1000 / 30); }
    else if (code === 'Period' && !e.shiftKey) { page.player.pause(); page.player.seek(page.player.time() + 1000 / 30); }
    else if (code === 'KeyJ' || code === 'KeyL') {
      const cur = SPEEDS.indexOf(page.player.rate());
      const i = cur < 0 ? 2 : Math.max(0, Math.min(SPEEDS.length - 1, cur + (code === 'KeyJ' ? -1 : 1)));
      page.player.setRate(SPEEDS[i]);
    } else if (e.key === '?' || (code === 'Slash' && e.shiftKey)) showHelp();
    else if (code === 'Escape') { state.markIn = state.markOut = null; page.tagForm.showMarks(); }
    else handled = false;
    if (handled) e.preventDefault();
  });
}

export function showHelp() {
  const keys = [['Space', 'keys.play'], ['I', 'keys.in'], ['O', 'keys.out'], ['T', 'keys.tag'], ['← / →', 'keys.seek'],
    [', / .', 'keys.frame'], ['J / L', 'keys.speed'], ['Esc', 'keys.escape'], ['Ctrl+Enter', 'keys.save'], ['?', 'keys.help']];
  modal(t('keys.title'), el('div', null,
    el('table', {class: 'keys'}, el('tbody', null, keys.map(([k, d]) => el('tr', null, el('td', null, el('kbd', null, k)), el('td', null, t(d)))))),
    el('p', {class: 'muted small'}, t('keys.note'))), {id: 'help-overlay'});
}
