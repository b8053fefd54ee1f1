/*
 * Scripted participants for «Замена паспорта» (prototype/: a multi-page form
 * in a phone-width column), driven by demo/personas.js --situation
 * passport-replacement. Held-out material (demo/situations/README.md).
 */
'use strict';

module.exports = ({ sleep, until, nowNs }) => {
  const U = {
    index: /\/index\.html$/,
    reason: /\/reason\.html\?r=/,
    personal: /\/personal\.html$/,
    photo: /\/photo\.html$/,
    done: /\/done\.html$/,
  };

  /** Types into a field, then leaves it (the page checks a field on blur). */
  async function fill(s, selector, text, cps) {
    await s.page.fill(selector, '');
    await s.type(selector, text, cps);
    await s.page.keyboard.press('Tab');
  }

  const personas = {
    /* An elderly man on a phone-sized page: taps the menu icon that does
       nothing, asks where the menu is, fights the date format, stalls over
       the photo requirements. */
    elderly: {
      participant: 'P-PAS-01',
      description: 'пожилой мужчина: значок меню не работает, формат даты, требования к фото',
      voice: { speed: 125, gap: 6, pitch: 40 },
      phrases: [
        'А где тут меню?',
        'Так, дата рождения.',
        'Какой ещё приказ МВД, где его смотреть?',
        'Ладно, сфотографируюсь там.',
      ],
      async run(s) {
        const pg = s.page;
        await s.pause(1.5, 3);
        const burger = await s.clickAt('#burger', 3);
        s.friction({ kind: 'icon_not_working', detector: 'dead_click', start_ns: burger, end_ns: burger,
          note: 'значок меню выглядит кнопкой, но ничего не открывает' });
        await sleep(1300);
        const where = await s.say('А где тут меню?').started;
        s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['question_to_moderator'],
          spoken: true, match: 'span', start_ns: where.start_ns, end_ns: where.end_ns, note: '«а где тут меню»' });
        await s.players[s.players.length - 1];
        await s.pause(1.5, 3);
        await s.enter('office', U.reason, () => pg.click('#reason-age'));
        await s.pause(1.5, 3);
        await pg.selectOption('#office', '1');
        await s.pause(1, 2);
        await s.enter('personal', U.personal, () => pg.click('#reason-next'));
        await s.pause(1, 2);
        await s.type('#surname', 'Петров', 5);
        await s.pause(0.8, 1.5);
        s.say('Так, дата рождения.');
        const first = nowNs();
        await fill(s, '#birth', '1.5.1960', 4);
        await s.pause(1.5, 3);
        await fill(s, '#birth', '01.13.1960', 4);
        await s.pause(1.5, 3);
        await fill(s, '#birth', '01.05.1960', 4);
        const fixed = nowNs();
        s.friction({ kind: 'date_format', detector: 'field_struggle', start_ns: first, end_ns: fixed,
          note: 'дата рождения: без нулей, затем несуществующий месяц, затем верно' });
        await s.pause(1, 2);
        await s.type('#old-series', '4005 123456', 6);
        await s.pause(1, 2);
        const photo = await s.enter('photo', U.photo, () => pg.click('#personal-next'));
        // Reads the requirements, stuck over the order number.
        await until(photo + s.d(5, 7) * 1e6);
        const ask = await s.say('Какой ещё приказ МВД, где его смотреть?').started;
        s.friction({ kind: 'question', detector: 'question_to_moderator', also: ['verbal_confusion', 'hesitation'],
          spoken: true, match: 'span', start_ns: ask.start_ns, end_ns: ask.end_ns, note: 'вопрос о требованиях к фото' });
        await until(photo + s.d(14, 18) * 1e6);
        s.friction({ kind: 'stall', detector: 'hesitation', also: ['question_to_moderator'], start_ns: photo, end_ns: nowNs(),
          note: 'долгая пауза над требованиями к фотографии' });
        await s.say('Ладно, сфотографируюсь там.');
        await pg.click('#photo-office');
        await s.pause(1, 2);
        await s.enter('done', U.done, () => pg.click('#photo-next'));
        await s.pause(1.5, 3);
      },
    },

    /* A student: taps the wrong reason and goes back with the browser, then
       presses «Отправить заявление» before ticking the photo box (nothing
       happens). */
    student: {
      participant: 'P-PAS-02',
      description: 'студентка: не та причина и назад браузером, «Отправить» без галочки',
      voice: { speed: 155, gap: 3, pitch: 60 },
      phrases: [
        'Ой, фамилию я не меняла.',
        'Так, отправляю.',
        'А, галочку надо.',
      ],
      async run(s) {
        const pg = s.page;
        await s.pause(1, 2);
        await s.enter('office', U.reason, () => pg.click('#reason-name'));
        await s.pause(1.5, 2.5);
        // The browser's own «Назад»: the page may come back from the
        // back/forward cache, which fires no new load to wait for.
        await pg.goBack({ waitUntil: 'commit' });
        const back = nowNs();
        s.truth.steps.push({ step: 'choose', start_ns: back });
        s.step = 'choose';
        s.friction({ kind: 'wrong_choice_and_return', detector: 'backtrack', start_ns: back, end_ns: back,
          note: 'выбрала «Смена фамилии» и вернулась кнопкой «Назад» браузера' });
        await sleep(300);
        await s.say('Ой, фамилию я не меняла.');
        await s.pause(0.8, 1.5);
        await s.enter('office', U.reason, () => pg.click('#reason-age'));
        await s.pause(0.8, 1.5);
        await pg.selectOption('#office', '2');
        await s.pause(0.5, 1);
        await s.enter('personal', U.personal, () => pg.click('#reason-next'));
        await s.type('#surname', 'Соколова', 12);
        await fill(s, '#birth', '14.09.2005', 10);
        await s.type('#old-series', '4019 654321', 12);
        await s.pause(0.5, 1);
        await s.enter('photo', U.photo, () => pg.click('#personal-next'));
        await s.pause(1.5, 3);
        s.say('Так, отправляю.');
        const dead = await s.clickAt('#photo-next', 8);
        s.friction({ kind: 'button_without_effect', detector: 'dead_click', start_ns: dead, end_ns: dead,
          note: '«Отправить заявление» без галочки о фото ничего не делает и ничего не говорит' });
        await sleep(1600);
        await s.say('А, галочку надо.');
        await pg.click('#photo-office');
        await s.pause(0.5, 1);
        await s.enter('done', U.done, () => pg.click('#photo-next'));
        await s.pause(1, 2);
      },
    },
  };

  return {
    lifeSituation: 'passport-replacement',
    task: 'Подать заявление на замену паспорта в 20 или 45 лет',
    first: { step: 'choose', re: U.index, path: 'index.html' },
    personas,
  };
};
