/*
 * Scripted participants for «Запись ребёнка в детский сад» (prototype/: a
 * regional portal in desktop layout: the service's page, then a five-step
 * wizard of separate pages with a stepper whose passed steps are links, an
 * address field with suggestions, kindergarten cards, a simulated upload and
 * a summary sent by a plain form submit), driven by demo/personas.js
 * --situation kindergarten-enrolment. Held-out material
 * (demo/situations/README.md): written without looking at the detectors.
 *
 * Idle gaps: nothing here leaves the page without a click, typing or
 * scrolling for more than about 8 s, except the one stall a persona injects
 * (the address suggestions are chosen with keys, which the probe does not
 * record, so the click after them is what ends a gap).
 */
'use strict';

module.exports = ({ sleep, until, nowNs }) => {
  const U = {
    index: /\/index\.html$/,
    child: /\/zayavlenie\/rebenok\.html$/,
    address: /\/zayavlenie\/adres\.html$/,
    kindergarten: /\/zayavlenie\/sad\.html$/,
    documents: /\/zayavlenie\/dokumenty\.html$/,
    summary: /\/zayavlenie\/proverka\.html$/,
    done: /\/zayavlenie\/gotovo\.html\?soglasie=da$/,
  };

  const personas = {
    /* A young father in a hurry: types the child's SNILS from memory with
       two digits swapped and fixes the wrong part first (two checksum
       errors), takes the first address suggestion with the keyboard (the
       wrong street) and goes back through the stepper, waits on a
       «Подробнее» that answers after 3 s, and hits the row's «Загрузить»
       whose handler throws. */
    hurried: {
      participant: 'P-KIN-01',
      description: 'спешащий папа: ошибки в СНИЛС, не та подсказка адреса и возврат по шкале шагов, медленное «Подробнее», «Загрузить» с ошибкой скрипта',
      voice: { speed: 165, gap: 3, pitch: 30 },
      phrases: [
        'Так, запись в садик, поехали.',
        'Лесная, семь, вот.',
        'Адрес не тот, мне Лесная улица, а не проезд.',
        'Солнышко, ближе всех. Посмотрим подробнее.',
        'Не понял. Загрузилось или нет?',
        'Ладно, попробую вот сюда.',
        'Всё, отправил.',
      ],
      async run(s) {
        const pg = s.page;
        s.say('Так, запись в садик, поехали.');
        await s.pause(1.5, 3);
        await s.enter('child', U.child, () => pg.click('#get-service'));
        await s.pause(1, 2);
        await s.type('#child-last', 'Смирнов', 12);
        await s.pause(0.4, 0.8);
        await s.type('#child-first', 'Лев', 12);
        await s.pause(0.4, 0.8);
        await s.type('#child-middle', 'Андреевич', 12);
        await s.pause(0.4, 0.8);
        await s.type('#child-birth', '14062022', 10); // the mask puts the dots in
        await s.pause(0.4, 0.8);
        // SNILS from memory, two digits of the number swapped (…-749 instead of …-479).
        await pg.click('#child-snils');
        await sleep(250);
        const struggle = nowNs();
        await pg.keyboard.type('15682374995', { delay: 90 });
        await s.pause(0.6, 1);
        await pg.click('#child-next'); // «СНИЛС указан с ошибкой: проверьте цифры по документу»
        await s.pause(1.5, 2.5);
        // Blames the check digits: erases them and types them the other way round.
        await pg.click('#child-snils');
        await pg.keyboard.press('End');
        await pg.keyboard.press('Backspace');
        await sleep(150);
        await pg.keyboard.press('Backspace');
        await sleep(300);
        await pg.keyboard.type('59', { delay: 120 });
        await s.pause(0.6, 1);
        await pg.click('#child-next'); // the same message again
        await s.pause(2, 3.5); // looks the number up on his phone
        await pg.click('#child-snils');
        await pg.keyboard.press('Control+A');
        await pg.keyboard.type('15682347995', { delay: 110 });
        const fixed = nowNs();
        s.friction({ kind: 'snils_checksum_errors', detector: 'field_struggle', start_ns: struggle, end_ns: fixed,
          note: 'СНИЛС ребёнка: переставлены цифры, две ошибки контрольной суммы, стирает последние цифры и набирает снова, затем весь номер заново' });
        await s.pause(0.6, 1);
        await s.enter('address', U.address, () => pg.click('#child-next'));
        await s.pause(1, 1.5);
        await s.type('#address', 'Лесная 7', 12);
        s.say('Лесная, семь, вот.');
        await s.pause(0.8, 1.2);
        // Takes the first suggestion with the keyboard: «Лесной проезд, д. 7», not «ул. Лесная, д. 7».
        await pg.keyboard.press('ArrowDown');
        await sleep(200);
        await pg.keyboard.press('Enter');
        await s.pause(0.6, 1);
        await s.enter('kindergarten', U.kindergarten, () => pg.click('#address-next'));
        await s.pause(2, 3.5); // reads «… Лесной проезд, д. 7 (Заречный район)»
        // Back through the stepper's «Адрес» link.
        const back = await s.enter('address', U.address, () => pg.click('#stepper-address'));
        s.friction({ kind: 'wrong_suggestion_and_return', detector: 'backtrack', start_ns: back, end_ns: back,
          note: 'выбрал первую подсказку «Лесной проезд» вместо «ул. Лесная», на выборе сада увидел не тот район и вернулся по шкале шагов к адресу' });
        await sleep(300);
        await s.say('Адрес не тот, мне Лесная улица, а не проезд.');
        await s.pause(0.5, 1);
        await pg.click('#address');
        await sleep(300);
        await pg.keyboard.press('ArrowDown'); // the list opens again for «Лесная 7»
        await sleep(250);
        await pg.keyboard.press('ArrowDown');
        await sleep(250);
        await pg.keyboard.press('Enter');
        await s.pause(0.6, 1);
        const again = await s.enter('kindergarten', U.kindergarten, () => pg.click('#address-next'));
        s.truth.frictions[s.truth.frictions.length - 1].end_ns = again;
        await s.pause(1.5, 2.5);
        await s.say('Солнышко, ближе всех. Посмотрим подробнее.');
        // «Подробнее» answers only 3 s later, with nothing shown meanwhile.
        const more = await s.clickAt('#kg-14-more', 4);
        s.friction({ kind: 'slow_details', detector: 'dead_click', start_ns: more, end_ns: more,
          note: '«Подробнее» у сада «Солнышко»: 3 с без какого-либо отклика, потом раскрываются сведения' });
        await sleep(3600);
        await s.pause(1.5, 2.5); // reads the opening hours
        await pg.click('#kg-14-pick');
        await s.pause(0.6, 1);
        await pg.selectOption('#start-date', { index: 1 }); // the nearest 1 September
        await s.pause(0.6, 1);
        await s.enter('documents', U.documents, () => pg.click('#kg-next'));
        await s.pause(1, 2);
        // The birth certificate row's «Загрузить» throws (TypeError) and changes nothing; he tries twice.
        const up1 = await s.clickAt('#upload-birth', 3);
        await sleep(1800);
        const up2 = await s.clickAt('#upload-birth', 3);
        s.friction({ kind: 'upload_button_throws', detector: 'js_error', also: ['dead_click'], start_ns: up1, end_ns: up2,
          note: '«Загрузить» у свидетельства о рождении: обработчик падает с TypeError, на странице ничего не меняется (два щелчка)' });
        await sleep(700);
        const huh = await s.say('Не понял. Загрузилось или нет?').started;
        s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['question_to_moderator'],
          spoken: true, match: 'span', start_ns: huh.start_ns, end_ns: huh.end_ns,
          note: '«не понял, загрузилось или нет» после неработающей кнопки' });
        await s.players[s.players.length - 1];
        await s.pause(0.8, 1.2);
        s.say('Ладно, попробую вот сюда.');
        await pg.click('#dropzone');
        await s.pause(1, 1.5);
        await pg.click('#pick-svidetelstvo');
        await s.pause(1.5, 2); // the progress bar runs 0.8 s
        await s.enter('summary', U.summary, () => pg.click('#docs-next'));
        await s.pause(2, 3.5); // skims the summary
        await pg.click('#agree-label');
        await s.pause(0.5, 1);
        await s.enter('done', U.done, () => pg.click('#send'));
        await s.say('Всё, отправил.');
        await s.pause(1, 2);
      },
    },

    /* A grandmother enrolling her grandson: slow, reads aloud; clicks the
       address suggestion that ignores clicks three times, asks the moderator
       (a help marker), then uses the keys she is told about; sits a long
       time over the list of kindergartens; on the summary loses track of
       whether the application is already sent. */
    grandma: {
      participant: 'P-KIN-02',
      description: 'бабушка записывает внука: подсказка адреса не нажимается, вопрос модератору, долгое раздумье над садами, путаница на проверке',
      voice: { speed: 120, gap: 7, pitch: 62 },
      phrases: [
        'Так, запись в детский сад.',
        'Кузнецов Артём Игоревич.',
        'СНИЛС, сейчас, у меня записано.',
        'Вот, Садовая, двенадцать.',
        'Подскажите, как тут адрес выбрать.',
        'А, стрелочкой. Поняла.',
        'Так, детские сады рядом с домом.',
        'Солнышко. Ромашка, мест нет. Теремок.',
        'Возьму Солнышко, оно ближе.',
        'Свидетельство о рождении.',
        'Так.',
        'Что-то я совсем запуталась. Это уже отправлено или ещё нет.',
        'А, вот кнопка. Отправить заявление.',
        'Отправлено. Ну, слава богу.',
      ],
      async run(s) {
        const pg = s.page;
        const cps = s.q ? 7 : 4; // typing speed, characters per second
        await s.pause(0.5, 1);
        await s.say('Так, запись в детский сад.');
        await s.pause(1, 1.5);
        await s.enter('child', U.child, () => pg.click('#get-service'));
        await s.pause(1.5, 3);
        s.say('Кузнецов Артём Игоревич.'); // reads from the certificate while typing
        await s.type('#child-last', 'Кузнецов', cps);
        await s.pause(0.6, 1.5);
        await s.type('#child-first', 'Артём', cps);
        await s.pause(0.6, 1.5);
        await s.type('#child-middle', 'Игоревич', cps);
        await s.pause(0.8, 2);
        await s.type('#child-birth', '03.02.2022', cps); // types the dots herself; the mask keeps its own
        await s.pause(0.6, 1);
        s.say('СНИЛС, сейчас, у меня записано.');
        await s.pause(1.5, 2.5); // finds the note
        await s.type('#child-snils', '145-287-356 80', cps);
        await s.pause(1, 2);
        await s.enter('address', U.address, () => pg.click('#child-next'));
        await s.pause(1.5, 3);
        await s.type('#address', 'Садовая 12', cps);
        await s.pause(1, 1.5);
        await s.say('Вот, Садовая, двенадцать.');
        // The suggestion list has no click handler (keys only): three clicks, about a second apart.
        let rage = 0;
        for (let i = 0; i < 3; i++) {
          const t = await s.clickAt('#addr-sadovaya-12', 5);
          rage = rage || t;
          if (i < 2) await sleep(s.q ? 800 : 1000);
        }
        const rageEnd = nowNs();
        s.friction({ kind: 'suggestion_ignores_click', detector: 'rage_click', also: ['dead_click'], start_ns: rage, end_ns: rageEnd,
          note: '3 щелчка подряд по подсказке «ул. Садовая, д. 12», которая не реагирует на мышь' });
        s.friction({ kind: 'suggestion_ignores_click', detector: 'dead_click', also: ['rage_click'], start_ns: rage, end_ns: rageEnd,
          note: 'щелчки по подсказке адреса ничего не меняют на странице' });
        await sleep(600);
        const ask = await s.say('Подскажите, как тут адрес выбрать.').started;
        s.friction({ kind: 'question', detector: 'question_to_moderator', also: ['verbal_confusion'], spoken: true, match: 'span',
          start_ns: ask.start_ns, end_ns: ask.end_ns, note: 'просьба к модератору без вопросительной интонации; оператор отмечает помощь' });
        await s.players[s.players.length - 1];
        await sleep(300);
        await s.marker({ type: 'help', label: 'Не выбирается подсказка адреса; подсказали стрелку вниз и Enter' });
        await sleep(600); // the moderator explains
        s.say('А, стрелочкой. Поняла.');
        await pg.keyboard.press('ArrowDown');
        await sleep(500);
        await pg.keyboard.press('Enter');
        await s.pause(0.8, 1);
        const kg = await s.enter('kindergarten', U.kindergarten, () => pg.click('#address-next'));
        // A long look at the list, reading it aloud, nothing clicked.
        await s.pause(1.5, 2);
        await s.say('Так, детские сады рядом с домом.');
        await s.pause(1, 1.5);
        await s.say('Солнышко. Ромашка, мест нет. Теремок.');
        await until(kg + s.d(13, 15) * 1e6);
        const pick = await s.clickAt('#kg-14-pick', 5);
        s.friction({ kind: 'stall', detector: 'hesitation', start_ns: kg, end_ns: pick,
          note: 'долго читает список детских садов вслух, ничего не нажимая' });
        s.say('Возьму Солнышко, оно ближе.');
        await s.pause(1.5, 2.5);
        await pg.selectOption('#start-date', { index: 1 }); // the nearest 1 September
        await s.pause(1.5, 2);
        await s.enter('documents', U.documents, () => pg.click('#kg-next'));
        await s.pause(1.5, 2.5);
        await s.say('Свидетельство о рождении.');
        await pg.click('#dropzone');
        await s.pause(2, 3); // looks through the files
        await pg.click('#pick-svidetelstvo');
        await s.pause(2, 3);
        await s.enter('summary', U.summary, () => pg.click('#docs-next'));
        await s.pause(1.5, 2.5);
        await pg.mouse.move(640, 420);
        await pg.mouse.wheel(0, 200);
        await s.pause(0.5, 1);
        const lead = await s.say('Так.').started;
        const lost = await s.say('Что-то я совсем запуталась. Это уже отправлено или ещё нет.', 900).started;
        s.friction({ kind: 'spoken_confusion', detector: 'verbal_confusion', also: ['question_to_moderator'],
          spoken: true, match: 'span', start_ns: lead.start_ns, end_ns: lost.end_ns,
          note: '«совсем запуталась, это уже отправлено или ещё нет» на странице проверки' });
        await sleep(2500);
        await pg.mouse.wheel(0, 200); // scrolls on while talking
        await s.players[s.players.length - 1];
        await s.pause(1, 1.5);
        await pg.click('#agree-label');
        await s.say('А, вот кнопка. Отправить заявление.');
        await s.enter('done', U.done, () => pg.click('#send'));
        await s.say('Отправлено. Ну, слава богу.');
        await s.pause(1, 2);
      },
    },
  };

  return {
    lifeSituation: 'kindergarten-enrolment',
    task: 'Записать ребёнка в детский сад',
    first: { step: 'service', re: U.index, path: 'index.html' },
    personas,
  };
};
