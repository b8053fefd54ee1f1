// UI string lookup. Russian is the default; the cookie `lab_lang` (ru|en)
// picks the language, and the header switch sets it. `t(key, {name: value})`
// fills `{name}` placeholders; a missing key falls back to Russian, then to
// the key itself. The tables live in i18n-ru.js and i18n-en.js.

import ru from './i18n-ru.js';
import en from './i18n-en.js';

const TABLES = {ru, en};

const LANG = (function () {
  const m = document.cookie.match(/(?:^|;\s*)lab_lang=(ru|en)\b/);
  if (m) return m[1];
  const l = document.documentElement.lang;
  return l === 'en' ? 'en' : 'ru';
})();

/** The UI language: 'ru' or 'en'. */
export function lang() { return LANG; }

/** The BCP 47 locale for dates and numbers in the UI language. */
export function locale() { return LANG === 'en' ? 'en-GB' : 'ru-RU'; }

export function t(key, params) {
  const dict = TABLES[LANG] || ru;
  let s = dict[key];
  if (s === undefined) s = ru[key];
  if (s === undefined) return key;
  if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (params[k] === undefined || params[k] === null ? m : String(params[k])));
  return s;
}

/** Remembers the language for a year and reloads the page in it. */
export function setLang(l) {
  document.cookie = `lab_lang=${l === 'en' ? 'en' : 'ru'}; path=/; max-age=31536000; SameSite=Lax`;
  location.reload();
}
