/*
 * Scripted participants for «Запись на приём к врачу» (prototype/, a
 * single-page app with hash routes and a modal confirmation), driven by
 * demo/personas.js --situation doctor-appointment. Written after the
 * friction detectors, not used to tune them: its sessions are held-out
 * material (docs/measurements.md).
 *
 * Each persona's `run(s)` gets demo/personas.js's Session (`s.page`,
 * `s.enter`, `s.say`, `s.clickAt`, `s.type`, `s.marker`, `s.friction`,
 * `s.pause`) and the helpers passed to this module.
 */
'use strict';

module.exports = ({ sleep, until, nowNs }) => {
  const U = {
    start: /\/index\.html(#\/?)?$/,
    clinic: /#\/clinic$/,
    doctor: /#\/doctor$/,
    slot: /#\/slot$/,
    done: /#\/done$/,
  };

  /** Clicks `selector` that opens the confirmation dialog; the step starts when it is shown. */
  async function openDialog(s, selector) {
    const shown = s.page.waitForSelector('[role="dialog"]', { timeout: 10000 });
    await s.page.click(selector);
    await shown;
    const t = nowNs();
    s.truth.steps.push({ step: 'confirm', start_ns: t });
    s.step = 'confirm';
    return t;
  }

  const personas = {
    /* A pensioner: takes the specialty card for a button, hammers the
       disabled «Записаться» before choosing a time, then stalls in the
       confirmation over the policy number and asks for help. */
    senior: {
      participant: 'P-DOC-01',
      description: 'пенсионерка: клик по карточке вместо кнопки, неактивная «Записаться», вопрос о полисе',
      voice: { speed: 130, gap: 6, pitch: 45 },
      phrases: [
        'Так, запишусь к терапевту.',
        'Хм, ничего не происходит.',
        'А почему кнопка не работает?',
        'Не уверена, где взять номер полиса.',
        'А, он на карточке написан.',
      ],
      async run(s) {
        const pg = s.page;
        await s.pause(1, 2);
        await s.enter('clinic', U.clinic, () => pg.click('#start'));
        await s.pause(1.5, 3);
        await pg.click('#clinic-1');
        await s.pause(1, 2);
        await s.enter('doctor', U.doctor, () => pg.click('#clinic-next'));
        s.say('Так, запишусь к терапевту.');
        await s.pause(1.5, 3);
        // The card is drawn like a button; only «Выбрать» inside it works.
        const card = await s.clickAt('#spec-therapist h3', 4);
        s.friction({ kind: 'card_not_clickable', detector: 'dead_click', start_ns: card, end_ns: card,
          note: 'клик по карточке «Терапевт» — не кнопка, ничего не происходит' });
        await sleep(1500);
        const nothing = await s.say('Хм, ничего не происходит.').started;
        s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['dead_click'],
          spoken: true, match: 'span', start_ns: nothing.start_ns, end_ns: nothing.end_ns, note: '«ничего не происходит» после клика по карточке' });
        await s.players[s.players.length - 1];
        await s.pause(1, 2);
        await s.enter('slot', U.slot, () => pg.click('#pick-therapist'));
        await s.pause(1.5, 3);
        // «Записаться» is disabled until a time is chosen.
        let rage = 0;
        for (let i = 0; i < 4; i++) {
          const t = await s.clickAt('#book', 6);
          rage = rage || t;
          if (i < 3) await sleep(300);
        }
        const rageEnd = nowNs();
        s.friction({ kind: 'disabled_button', detector: 'rage_click', also: ['dead_click'], start_ns: rage, end_ns: rageEnd,
          note: '4 клика по неактивной «Записаться» до выбора времени' });
        s.friction({ kind: 'disabled_button', detector: 'dead_click', also: ['rage_click'], start_ns: rage, end_ns: rageEnd,
          note: 'клики по неактивной «Записаться»' });
        await sleep(600);
        const why = await s.say('А почему кнопка не работает?').started;
        s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['question_to_moderator'],
          spoken: true, match: 'span', start_ns: why.start_ns, end_ns: why.end_ns, note: '«почему кнопка не работает»' });
        await s.pause(2, 3);
        await pg.click('#slot-1015');
        await s.pause(1.5, 3);
        const dialog = await openDialog(s, '#book');
        // Stall over the policy number, thinking aloud, then the operator helps.
        await until(dialog + s.d(4, 6) * 1e6);
        const unsure = await s.say('Не уверена, где взять номер полиса.').started;
        s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['question_to_moderator', 'hesitation'],
          spoken: true, match: 'span', start_ns: unsure.start_ns, end_ns: unsure.end_ns, note: '«не уверена, где взять номер полиса»' });
        await until(dialog + s.d(13, 16) * 1e6);
        const help = await s.marker({ type: 'help', label: 'Не знает, где номер полиса' });
        s.friction({ kind: 'stall', detector: 'hesitation', also: ['question_to_moderator'], start_ns: dialog, end_ns: help,
          note: 'долгая пауза в окне подтверждения' });
        await s.pause(1.5, 2);
        await s.say('А, он на карточке написан.');
        await s.type('#policy', '7712 3456 7890 1234', 6);
        await s.pause(1, 2);
        await s.enter('done', U.done, () => pg.click('#confirm'));
        await s.pause(1.5, 3);
      },
    },

    /* A hurried parent: picks the wrong specialist, goes back from the time
       page with «Изменить специалиста» (history back in the app), picks
       again and books without trouble. */
    hurried: {
      participant: 'P-DOC-02',
      description: 'спешащий родитель: не тот специалист, возврат назад в приложении, запись',
      voice: { speed: 150, gap: 4, pitch: 55 },
      phrases: [
        'Ой, это хирург, мне не туда.',
        'Так, терапевт, десять пятнадцать.',
        'Готово.',
      ],
      async run(s) {
        const pg = s.page;
        await s.pause(0.5, 1);
        await s.enter('clinic', U.clinic, () => pg.click('#start'));
        await s.pause(0.8, 1.5);
        await pg.click('#clinic-2');
        await s.pause(0.5, 1);
        await s.enter('doctor', U.doctor, () => pg.click('#clinic-next'));
        await s.pause(1, 2);
        await s.enter('slot', U.slot, () => pg.click('#pick-surgeon'));
        await s.pause(1.5, 2.5);
        const back = await s.enter('doctor', U.doctor, () => pg.click('#change-doctor'));
        s.friction({ kind: 'wrong_choice_and_return', detector: 'backtrack', start_ns: back, end_ns: back,
          note: 'выбрал хирурга вместо терапевта и вернулся к выбору специалиста' });
        await sleep(300);
        await s.say('Ой, это хирург, мне не туда.');
        await s.pause(0.8, 1.5);
        await s.enter('slot', U.slot, () => pg.click('#pick-therapist'));
        s.say('Так, терапевт, десять пятнадцать.');
        await s.pause(1, 2);
        await pg.click('#slot-1015');
        await s.pause(0.8, 1.5);
        await openDialog(s, '#book');
        await s.pause(1, 2);
        await s.type('#policy', '5012 8877 6655 4433', 12);
        await s.pause(0.8, 1.5);
        await s.enter('done', U.done, () => pg.click('#confirm'));
        await s.say('Готово.');
        await s.pause(1, 2);
      },
    },
  };

  return {
    lifeSituation: 'doctor-appointment',
    task: 'Записаться на приём к терапевту',
    first: { step: 'start', re: U.start, path: 'index.html' },
    personas,
  };
};
