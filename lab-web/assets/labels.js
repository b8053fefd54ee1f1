// Labels of things the API names by id: detectors and tag categories.

import {api} from './api.js';
import {t, lang} from './i18n.js';

export function detectorLabel(d) {
  const key = 'detector.' + d;
  const v = t(key);
  return v === key ? d : v;
}

let categoriesPromise = null;

/** The tag categories from the server (once per page), or the built-in list. */
export function loadCategories() {
  if (!categoriesPromise) {
    categoriesPromise = api('GET', '/categories', null, {quiet: true})
      .then((r) => r.categories || [])
      .catch(() => ['navigation', 'comprehension', 'form_input', 'error', 'content', 'trust', 'performance', 'accessibility', 'other']
        .map((id) => ({id, ru: t('category.' + id), en: t('category.' + id)})));
  }
  return categoriesPromise;
}

export function categoryLabel(id, list) {
  const c = (list || []).find((x) => x.id === id);
  if (c) return (lang() === 'en' ? c.en : c.ru) || id;
  const key = 'category.' + id;
  const v = t(key);
  return v === key ? String(id) : v;
}
