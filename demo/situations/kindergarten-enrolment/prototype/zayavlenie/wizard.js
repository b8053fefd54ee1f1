/* Общее для страниц мастера «Запись в детский сад»: данные заявления в
   sessionStorage вкладки (формы ничего не отправляют по адресу), шкала шагов
   (пройденные шаги — ссылки), подсветка активного поля, ошибки полей
   (aria-invalid + текст под полем + сводка ошибок вверху). */
'use strict';
(function () {
  const KEY = 'kg-zayavlenie';
  let data = {};
  try { data = JSON.parse(sessionStorage.getItem(KEY) || '{}') || {}; } catch (_) { data = {}; }

  const STEPS = [
    ['child', 'rebenok.html', 'Ребёнок'],
    ['address', 'adres.html', 'Адрес'],
    ['kindergarten', 'sad.html', 'Детский сад'],
    ['documents', 'dokumenty.html', 'Документы'],
    ['summary', 'proverka.html', 'Проверка и отправка'],
  ];

  const App = {
    data,
    save(patch) {
      Object.assign(data, patch);
      sessionStorage.setItem(KEY, JSON.stringify(data));
    },
    /** Рисует шкалу шагов в #stepper; текущий шаг — из <body data-step>. */
    stepper() {
      const nav = document.getElementById('stepper');
      const cur = STEPS.findIndex((s) => s[0] === document.body.dataset.step);
      const ol = document.createElement('ol');
      STEPS.forEach(([id, href, title], i) => {
        const li = document.createElement('li');
        const num = '<span class="num">' + (i + 1) + '</span>';
        if (i < cur) {
          li.className = 'done';
          li.innerHTML = '<a id="stepper-' + id + '" href="' + href + '">' + num + title + '</a>';
        } else {
          li.className = i === cur ? 'current' : 'todo';
          if (i === cur) li.setAttribute('aria-current', 'step');
          li.innerHTML = num + title;
        }
        ol.append(li);
      });
      const pct = Math.round(((cur + 1) / STEPS.length) * 100);
      nav.append(ol);
      nav.insertAdjacentHTML('beforeend', '<div class="progress"><div class="progress-fill" style="width:' + pct +
        '%"></div></div><p class="progress-text">Шаг ' + (cur + 1) + ' из ' + STEPS.length + '</p>');
    },
    fieldError(input, message) {
      const err = document.getElementById(input.id + '-err');
      input.setAttribute('aria-describedby', err.id);
      err.textContent = message;
      err.hidden = false;
      input.setAttribute('aria-invalid', 'true');
    },
    clearError(input) {
      const err = document.getElementById(input.id + '-err');
      if (input.getAttribute('aria-invalid') === 'true') input.removeAttribute('aria-invalid');
      if (err && !err.hidden) { err.hidden = true; err.textContent = ''; }
    },
    /** Сводка ошибок вверху формы: [[input, текст]]; пустой список её прячет. */
    summary(errors) {
      const box = document.getElementById('error-summary');
      if (!errors.length) { box.hidden = true; return; }
      box.querySelector('ul').innerHTML = errors.map(([input, msg]) =>
        '<li><a href="#' + input.id + '">' + msg + '</a></li>').join('');
      box.hidden = false;
    },
  };
  window.App = App;

  // Активное поле подсвечивается вместе с подписью.
  document.addEventListener('focusin', (ev) => {
    const f = ev.target.closest && ev.target.closest('.field');
    if (f) f.classList.add('is-active');
  });
  document.addEventListener('focusout', (ev) => {
    const f = ev.target.closest && ev.target.closest('.field');
    if (f) f.classList.remove('is-active');
  });
})();
