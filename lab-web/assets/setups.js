// Study set-ups (/setups): what a station shows and asks in a session of one
// study (docs/study-format.md) — the life situation (journey), the consent
// text, the participant code pattern, the questionnaires and the tasks with
// the journey steps each covers. Researchers and admins edit them here;
// stations pull them with their token, or read the TOML file offered here
// when they cannot reach the server. The server checks every set-up again.

import {el, add, refill} from './dom.js';
import {t} from './i18n.js';
import {toast, select} from './widgets.js';
import {api} from './api.js';
import {can} from './roles.js';
import {runPage, setTitle} from './app.js';

/** The study file format this page writes (lab_model::study::STUDY_FORMAT_VERSION). */
const FORMAT_VERSION = 1;
/** A plain id, as the server checks it. */
const PLAIN_ID = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;
const QUESTIONNAIRES = ['step_ratings', 'seq', 'sus'];

/** An example code for a pattern: `#` a digit, `A` a Latin capital, the rest as is. */
function exampleCode(pattern) {
  let n = 0;
  return [...String(pattern)].map((c) => {
    if (c === '#') return String((7 + 3 * n++) % 10);
    if (c === 'A') return 'K';
    return c;
  }).join('');
}

function blank() {
  return {format_version: FORMAT_VERSION, id: '', title: '', life_situation: '', consent_text: '',
    participant_pattern: 'P##', questionnaires: {step_ratings: true, seq: true, sus: true}, tasks: []};
}

function tomlUrl(id) { return `/api/v1/setups/${encodeURIComponent(id)}/study.toml`; }

runPage(async ({main}) => {
  setTitle(t('setups.title'));
  if (!can('edit_setups')) {
    add(main, el('p', {class: 'empty'}, t('setups.forbidden')));
    return;
  }
  const listBox = el('div');
  const editor = el('section', {class: 'panel setup-editor', id: 'setup-editor', hidden: true});
  add(main,
    el('div', {class: 'page-head'}, el('h1', null, t('setups.title')),
      el('button', {type: 'button', class: 'btn btn-primary', id: 'new-setup', onclick: () => open(null)}, t('setups.new'))),
    el('p', {class: 'muted'}, t('setups.lead')),
    el('section', {class: 'panel', id: 'setups'}, listBox),
    editor);

  const journeys = (await api('GET', '/journeys')).journeys || [];
  const journeyTitle = (id) => (journeys.find((j) => j.id === id) || {}).title || id;
  const steps = new Map();
  async function journeySteps(id) {
    if (!id) return [];
    if (!steps.has(id)) {
      try { steps.set(id, (await api('GET', `/journeys/${encodeURIComponent(id)}`, null, {quiet: [404]})).steps || []); } catch (_) { return []; }
    }
    return steps.get(id);
  }

  let setups = [];
  async function loadList() {
    try { setups = (await api('GET', '/setups')).setups || []; } catch (_) { return; }
    if (!setups.length) { refill(listBox, el('p', {class: 'empty'}, t('setups.none'))); return; }
    refill(listBox, el('div', {class: 'table-scroll'}, el('table', {class: 'data setups-table'},
      el('thead', null, el('tr', null, ['setups.id', 'setups.name', 'setups.journey', 'setups.col_tasks', 'col.actions'].map((k) => el('th', {scope: 'col'}, t(k))))),
      el('tbody', null, setups.map((s) => el('tr', {class: 'setup-row', dataset: {id: s.id}},
        el('td', null, el('code', null, s.id)),
        el('td', null, s.title),
        el('td', null, journeyTitle(s.life_situation)),
        el('td', null, String((s.tasks || []).length)),
        el('td', {class: 'actions nowrap'},
          el('button', {type: 'button', class: 'btn btn-small', onclick: () => open(s)}, t('common.edit')), ' ',
          el('a', {class: 'btn btn-small btn-ghost', href: tomlUrl(s.id), download: `${s.id}.toml`, title: t('setups.download_hint')}, t('setups.download_toml')), ' ',
          el('button', {type: 'button', class: 'btn btn-small btn-danger', onclick: () => remove(s)}, t('common.delete')))))))));
  }

  async function remove(s) {
    if (!confirm(t('setups.delete_confirm', {title: s.title || s.id}))) return;
    try {
      await api('DELETE', `/setups/${encodeURIComponent(s.id)}`);
      toast(t('setups.deleted'), 'ok', 2000);
      if (editor.dataset.id === s.id) close();
      await loadList();
    } catch (_) { /* toast */ }
  }

  function close() {
    editor.hidden = true;
    delete editor.dataset.id;
    refill(editor);
    history.replaceState(null, '', location.pathname);
  }

  /** Opens the editor on a copy of `study` (null: a new one). */
  async function open(study) {
    const existing = !!study;
    const draft = existing ? JSON.parse(JSON.stringify(study)) : blank();
    draft.questionnaires = {...blank().questionnaires, ...(draft.questionnaires || {})};
    draft.tasks = draft.tasks || [];
    editor.hidden = false;
    if (existing) { editor.dataset.id = draft.id; history.replaceState(null, '', '#' + encodeURIComponent(draft.id)); } else delete editor.dataset.id;

    const field = (label, control, help) => el('label', {class: 'field'}, el('span', {class: 'label'}, label), control,
      help ? el('span', {class: 'help small muted'}, help) : null);
    const idInput = el('input', {name: 'id', value: draft.id, required: true, readOnly: existing, size: 32, autocomplete: 'off'});
    const titleInput = el('input', {name: 'title', value: draft.title, required: true, maxlength: '200', size: 48});
    const journeyOpts = [['', t('setups.choose_journey')], ...journeys.map((j) => [j.id, j.title])];
    if (draft.life_situation && !journeys.some((j) => j.id === draft.life_situation)) journeyOpts.push([draft.life_situation, draft.life_situation]);
    const journeySel = select('life_situation', journeyOpts, draft.life_situation, {required: true});
    const consent = el('textarea', {name: 'consent_text', rows: '4', required: true}, draft.consent_text);
    const pattern = el('input', {name: 'participant_pattern', value: draft.participant_pattern, required: true, size: 16, autocomplete: 'off'});
    const example = el('span', {class: 'small pattern-example'});
    const showExample = () => { example.textContent = t('setups.pattern_example', {code: exampleCode(pattern.value)}); };
    pattern.addEventListener('input', showExample);
    showExample();
    const checks = QUESTIONNAIRES.map((q) => el('label', {class: 'check'},
      el('input', {type: 'checkbox', name: 'q_' + q, checked: !!draft.questionnaires[q],
        onchange: (e) => { draft.questionnaires[q] = e.target.checked; }}), ' ', t('setups.q_' + q)));
    const tasksBox = el('div', {class: 'setup-tasks', id: 'setup-tasks'});
    const addTask = el('button', {type: 'button', class: 'btn', id: 'add-task', onclick: () => {
      const ids = new Set(draft.tasks.map((x) => x.id));
      let n = draft.tasks.length + 1;
      while (ids.has('t' + n)) n++;
      draft.tasks.push({id: 't' + n, title: '', instruction: '', expected_s: 0, steps: []});
      renderTasks();
    }}, t('setups.add_task'));

    const form = el('form', {class: 'stack setup-form', id: 'setup-form'},
      el('h2', null, existing ? t('setups.editing', {title: draft.title || draft.id}) : t('setups.new')),
      el('div', {class: 'field-row'},
        field(t('setups.id'), idInput, existing ? null : t('setups.id_help')),
        field(t('setups.name'), titleInput)),
      field(t('setups.journey'), journeySel, journeys.length ? null : t('setups.no_journeys')),
      field(t('setups.consent'), consent, t('setups.consent_help')),
      field(t('setups.pattern'), pattern, t('setups.pattern_help')), example,
      el('fieldset', {class: 'setup-questionnaires'}, el('legend', null, t('setups.questionnaires')), checks),
      el('fieldset', {class: 'setup-task-list'}, el('legend', null, t('setups.tasks')), tasksBox, addTask),
      el('div', {class: 'row-actions'},
        el('button', {type: 'submit', class: 'btn btn-primary', id: 'save-setup'}, t('common.save')),
        el('button', {type: 'button', class: 'btn btn-ghost', onclick: close}, t('common.cancel')),
        existing ? el('a', {class: 'btn btn-ghost', id: 'setup-toml', href: tomlUrl(draft.id), download: `${draft.id}.toml`, title: t('setups.download_hint')}, t('setups.download_toml')) : null));
    refill(editor, form);

    async function renderTasks() {
      const journeyId = journeySel.value;
      const choices = await journeySteps(journeyId);
      if (journeySel.value !== journeyId) return; // changed again meanwhile
      if (!draft.tasks.length) { refill(tasksBox, el('p', {class: 'empty'}, t('setups.no_tasks'))); return; }
      refill(tasksBox, draft.tasks.map((task, i) => {
        const move = (d) => { draft.tasks.splice(i + d, 0, draft.tasks.splice(i, 1)[0]); renderTasks(); };
        const text = (key, name, attrs) => el('input', {name, value: task[key] ?? '', ...attrs,
          oninput: (e) => { task[key] = e.target.value; }});
        const minutes = el('input', {type: 'number', name: 'expected_min', min: '0', max: '1440', step: '0.5',
          value: task.expected_s ? String(Math.round(task.expected_s / 30) / 2) : '',
          oninput: (e) => { const m = parseFloat(e.target.value); task.expected_s = isFinite(m) && m > 0 ? Math.round(m * 60) : 0; }});
        const stepBoxes = !journeyId ? el('p', {class: 'small muted'}, t('setups.steps_choose_journey'))
          : el('div', {class: 'step-checks'}, choices.map((s) => el('label', {class: 'check'},
            el('input', {type: 'checkbox', name: 'step', value: s.id, checked: task.steps.includes(s.id),
              onchange: (e) => {
                const chosen = new Set(task.steps);
                if (e.target.checked) chosen.add(s.id); else chosen.delete(s.id);
                // Kept in the journey's order.
                task.steps = choices.map((c) => c.id).filter((c) => chosen.has(c));
              }}), ' ', s.title, ' ', el('code', {class: 'small muted'}, s.id))));
        return el('fieldset', {class: 'setup-task', dataset: {index: i}},
          el('legend', null, t('setups.task_n', {n: i + 1})),
          el('div', {class: 'row-actions task-tools'},
            el('button', {type: 'button', class: 'btn btn-small btn-icon', title: t('setups.move_up'), 'aria-label': t('setups.move_up'), disabled: i === 0, onclick: () => move(-1)}, '↑'),
            el('button', {type: 'button', class: 'btn btn-small btn-icon', title: t('setups.move_down'), 'aria-label': t('setups.move_down'), disabled: i === draft.tasks.length - 1, onclick: () => move(1)}, '↓'),
            el('button', {type: 'button', class: 'btn btn-small btn-danger', onclick: () => { draft.tasks.splice(i, 1); renderTasks(); }}, t('setups.remove_task'))),
          el('div', {class: 'field-row'},
            field(t('setups.task_id'), text('id', 'task_id', {required: true, size: 12, autocomplete: 'off'})),
            field(t('setups.task_title'), text('title', 'task_title', {required: true, maxlength: '200', size: 40})),
            field(t('setups.expected_min'), minutes)),
          field(t('setups.instruction'), el('textarea', {name: 'instruction', rows: '3',
            oninput: (e) => { task.instruction = e.target.value; }}, task.instruction || '')),
          el('div', {class: 'field'}, el('span', {class: 'label'}, t('setups.steps')), stepBoxes));
      }));
    }

    journeySel.addEventListener('change', async () => {
      // Steps of another journey cannot stay: the server would refuse them.
      const ids = new Set((await journeySteps(journeySel.value)).map((s) => s.id));
      for (const task of draft.tasks) task.steps = task.steps.filter((s) => ids.has(s));
      renderTasks();
    });
    await renderTasks();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const study = {...draft, id: idInput.value.trim(), title: titleInput.value.trim(), life_situation: journeySel.value,
        consent_text: consent.value, participant_pattern: pattern.value.trim(), format_version: FORMAT_VERSION};
      study.tasks = draft.tasks.map((x) => ({...x, id: String(x.id).trim(), title: String(x.title).trim()}));
      if (!PLAIN_ID.test(study.id)) { toast(t('setups.bad_id')); idInput.focus(); return; }
      if (!study.life_situation) { toast(t('setups.need_journey')); journeySel.focus(); return; }
      if (!existing && setups.some((s) => s.id === study.id) && !confirm(t('setups.replace_confirm', {id: study.id}))) return;
      try {
        const saved = await api('PUT', `/setups/${encodeURIComponent(study.id)}`, study);
        toast(t('setups.saved'), 'ok', 2000);
        await loadList();
        await open(saved);
      } catch (_) { /* the server said why (toast) */ }
    });
    (existing ? titleInput : idInput).focus();
  }

  await loadList();
  const wanted = decodeURIComponent(location.hash.slice(1));
  const found = wanted && setups.find((s) => s.id === wanted);
  if (found) await open(found);
});
