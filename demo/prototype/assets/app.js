/* Поведение прототипа «Рождение ребёнка: единое пособие».
   Состояние заявления хранится в sessionStorage вкладки; введённые данные
   никуда не отправляются. Каждая страница заявления — отдельный URL, чтобы
   шаги карты пути различались по адресу. */
(function () {
  'use strict';
  var KEY = 'gu-demo-application';
  function load() { try { return JSON.parse(sessionStorage.getItem(KEY)) || {}; } catch (e) { return {}; } }
  function save(patch) {
    var s = load();
    for (var k in patch) s[k] = patch[k];
    sessionStorage.setItem(KEY, JSON.stringify(s));
    return s;
  }
  function $(sel) { return document.querySelector(sel); }
  function go(url) { location.assign(url); }

  function showError(input, message) {
    var field = input.closest('.field');
    field.classList.add('has-error');
    field.querySelector('.error').textContent = message;
    input.setCustomValidity(message);
  }
  function clearError(input) {
    var field = input.closest('.field');
    field.classList.remove('has-error');
    input.setCustomValidity('');
  }

  // Дата ДД.ММ.ГГГГ: существующая, не в будущем, не раньше 1900 года.
  function dateProblem(text) {
    var m = /^(\d{2})\.(\d{2})\.(\d{4})$/.exec(text.trim());
    if (!m) return 'Введите дату в формате ДД.ММ.ГГГГ, например 05.03.2025';
    var d = +m[1], mo = +m[2], y = +m[3];
    var date = new Date(y, mo - 1, d);
    if (date.getFullYear() !== y || date.getMonth() !== mo - 1 || date.getDate() !== d || y < 1900) {
      return 'Такой даты нет. Проверьте день и месяц';
    }
    if (date.getTime() > Date.now()) return 'Дата рождения не может быть в будущем';
    return null;
  }

  var pages = {
    search: function () {
      var q = new URLSearchParams(location.search).get('q') || '';
      var box = $('#q');
      if (box) box.value = q;
      var echo = $('#q-echo');
      if (echo) echo.textContent = q ? '«' + q + '»' : 'все услуги';
    },

    login: function () {
      var form = $('#esia-form');
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var login = $('#login'), pass = $('#password');
        var ok = true;
        if (!login.value.trim()) { showError(login, 'Введите телефон, почту или СНИЛС'); ok = false; } else clearError(login);
        if (!pass.value) { showError(pass, 'Введите пароль'); ok = false; } else clearError(pass);
        if (!ok) { form.reportValidity(); return; }
        save({ user: 'Иванова М. С.' });
        var next = new URLSearchParams(location.search).get('next') || 'apply/benefit.html';
        go(next);
      });
      form.addEventListener('input', function (ev) { clearError(ev.target); });
    },

    benefit: function () {
      var form = $('#benefit-form');
      var chosen = load().benefit;
      if (chosen) { var r = form.querySelector('input[name=benefit][value="' + chosen + '"]'); if (r) r.checked = true; }
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var chosen = form.querySelector('input[name=benefit]:checked');
        if (!chosen) { $('#benefit-error').style.display = 'block'; return; }
        save({ benefit: chosen.value });
        go('child.html');
      });
    },

    child: function () {
      var form = $('#child-form');
      var s = load();
      if (s.child) {
        for (var k in s.child) {
          var el = form.elements[k];
          if (el && el.type !== 'radio') el.value = s.child[k];
        }
        if (s.child.sex) { var r = form.querySelector('input[name=sex][value="' + s.child.sex + '"]'); if (r) r.checked = true; }
      }
      var date = $('#birth-date');
      date.addEventListener('input', function () { clearError(date); });
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var ok = true;
        ['child-last', 'child-first'].forEach(function (id) {
          var el = document.getElementById(id);
          if (!el.value.trim()) { showError(el, 'Заполните поле'); ok = false; } else clearError(el);
        });
        var problem = dateProblem(date.value);
        if (problem) { showError(date, problem); ok = false; } else clearError(date);
        if (!ok) { form.reportValidity(); return; }
        var sex = form.querySelector('input[name=sex]:checked');
        save({ child: { child_last: form.elements.child_last.value, child_first: form.elements.child_first.value,
          child_middle: form.elements.child_middle.value, birth_date: date.value, sex: sex ? sex.value : '' } });
        go('documents.html');
      });
    },

    documents: function () {
      var input = $('#file-birth'), list = $('#files'), next = $('#docs-next');
      // Большая область «Загрузить» — только оформление: обработчика у неё нет (ошибка макета).
      input.addEventListener('change', function () {
        list.innerHTML = '';
        Array.prototype.forEach.call(input.files, function (f) {
          var li = document.createElement('li');
          li.innerHTML = '<span>📄</span><span></span><span class="ok">Загружено</span>';
          li.children[1].textContent = f.name + ' · ' + Math.max(1, Math.round(f.size / 1024)) + ' КБ';
          list.appendChild(li);
        });
        next.disabled = input.files.length === 0;
        save({ documents: Array.prototype.map.call(input.files, function (f) { return f.name; }) });
      });
      $('#docs-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        if (input.files.length) go('payment.html');
      });
    },

    payment: function () {
      var form = $('#payment-form');
      function sync() {
        var how = form.querySelector('input[name=how]:checked').value;
        $('#card-fields').style.display = how === 'card' ? '' : 'none';
        $('#account-fields').style.display = how === 'account' ? '' : 'none';
      }
      form.addEventListener('change', function (ev) { if (ev.target.name === 'how') sync(); });
      sync();
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var how = form.querySelector('input[name=how]:checked').value;
        var ok = true;
        var checks = how === 'card'
          ? [['card-number', /^(\d{4} ?){4}$/, 'Номер карты «Мир» — 16 цифр']]
          : [['bik', /^\d{9}$/, 'БИК — 9 цифр'], ['account', /^\d{20}$/, 'Номер счёта — 20 цифр']];
        checks.forEach(function (c) {
          var el = document.getElementById(c[0]);
          if (!c[1].test(el.value.trim())) { showError(el, c[2]); ok = false; } else clearError(el);
        });
        if (!ok) { form.reportValidity(); return; }
        var value = how === 'card' ? $('#card-number').value.replace(/\s/g, '') : $('#account').value;
        save({ payment: { how: how, last4: value.slice(-4) } });
        go('review.html');
      });
      form.addEventListener('input', function (ev) { if (ev.target.closest('.field')) clearError(ev.target); });
    },

    review: function () {
      var s = load(), c = s.child || {};
      var benefit = { child: 'Единое пособие на ребёнка до 17 лет', pregnancy: 'Единое пособие беременной женщине' };
      $('#r-benefit').textContent = benefit[s.benefit] || '—';
      $('#r-child').textContent = [c.child_last, c.child_first, c.child_middle].filter(Boolean).join(' ') || '—';
      $('#r-date').textContent = c.birth_date || '—';
      $('#r-docs').textContent = (s.documents || []).join(', ') || '—';
      var p = s.payment || {};
      $('#r-pay').textContent = p.how === 'card' ? 'Карта «Мир» •••• ' + p.last4
        : p.how === 'account' ? 'Счёт •••• ' + p.last4 : '—';
      var agree = $('#agree'), send = $('#send');
      agree.addEventListener('change', function () { send.disabled = !agree.checked; });
      $('#review-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        if (!agree.checked) return;
        save({ number: String(Date.now()).slice(-9) });
        go('status.html');
      });
    },

    status: function () {
      var s = load();
      $('#number').textContent = s.number || '000000000';
    },
  };

  function start() {
    var user = load().user;
    var who = document.getElementById('gu-user-name');
    if (who && user) { who.textContent = user; who.parentNode.querySelector('.avatar').textContent = 'МИ'; }
    var page = document.body.getAttribute('data-page');
    if (pages[page]) pages[page]();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
