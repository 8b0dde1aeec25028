// tunelab rating page. Every text from the sheet is set with textContent, never as HTML.
'use strict';

const token = decodeURIComponent(location.pathname.split('/').pop());
const api = '/api/' + encodeURIComponent(token);
const $ = (id) => document.getElementById(id);
const state = { sheet: null, pos: 0, active: 0, answers: {}, answered: 0, shown: null, seq: 0, saving: Promise.resolve() };

function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function call(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(api + path, opts);
  let data;
  try { data = await r.json(); } catch (e) { data = { error: 'the server answered ' + r.status }; }
  if (!r.ok) throw new Error(data.error || 'the server answered ' + r.status);
  return data;
}

function status(text, bad) {
  $('status').textContent = text;
  $('status').className = bad ? 'bad' : '';
}

const item = () => state.sheet.items[state.pos];
const answer = () => state.answers[String(item().item)] || { values: {}, comment: '' };
const pairwise = () => state.sheet.mode === 'pairwise';

function buildScales() {
  const scales = $('scales');
  state.sheet.criteria.forEach((c, ci) => {
    const row = el('div', undefined, { class: 'scale', 'data-criterion': c });
    row.append(el('span', c, { class: 'name' }));
    for (let v = 1; v <= 5; v++) {
      const b = el('button', String(v), { type: 'button', 'data-value': String(v), title: 'key ' + v });
      b.addEventListener('click', () => { state.active = ci; rate(c, v); });
      row.append(b);
    }
    scales.append(row);
  });
}

function keysHelp() {
  const f = $('keys');
  const parts = pairwise()
    ? [[['A', 'B', 'T'], 'A, B or tie'], [['Enter'], 'next'], [['←'], 'back']]
    : [[['1', '5'], 'rate the highlighted criterion'], [['↑', '↓'], 'change criterion'],
      [['Enter'], 'next'], [['←'], 'back']];
  f.textContent = 'Keys: ';
  parts.forEach(([ks, what], i) => {
    if (i) f.append(' · ');
    ks.forEach((k, j) => {
      if (j) f.append(ks[0] === '1' ? '–' : ' ');
      f.append(el('kbd', k));
    });
    f.append(' ' + what);
  });
  f.append(' · Shift+Enter: new line in the comment');
}

function progress() {
  const n = state.sheet.items.length;
  $('position').textContent = state.pos < n ? 'Item ' + (state.pos + 1) + ' of ' + n : 'Done';
  $('progress').textContent = state.answered + ' of ' + n + ' answered';
}

function show() {
  const n = state.sheet.items.length;
  progress();
  $('item').hidden = state.pos >= n;
  $('done').hidden = state.pos < n;
  if (state.pos >= n) return;
  const it = item();
  const a = answer();
  $('prompt').textContent = it.prompt;
  $('single').hidden = pairwise();
  $('pair').hidden = !pairwise();
  $('choices').hidden = !pairwise();
  if (pairwise()) {
    $('output-a').textContent = it.output_a;
    $('output-b').textContent = it.output_b;
    for (const b of $('choices').querySelectorAll('button')) {
      b.classList.toggle('selected', a.values.preference === b.dataset.choice);
    }
  } else {
    $('output').textContent = it.output;
  }
  for (const row of $('scales').children) {
    const c = row.dataset.criterion;
    row.classList.toggle('active', state.sheet.criteria.indexOf(c) === state.active);
    for (const b of row.querySelectorAll('button')) {
      b.classList.toggle('selected', a.values[c] === Number(b.dataset.value));
    }
  }
  if (state.shown !== it) $('comment').value = a.comment; // keep what is being typed
  state.shown = it;
}

// Store the current item's answer with one change applied; the server keeps one per item.
// The page shows the change at once; saves go to the server one after another.
function save(change) {
  const it = item();
  const id = String(it.item);
  const before = answer();
  const values = Object.assign({}, before.values, change);
  const comment = $('comment').value;
  const body = pairwise() ? { preference: values.preference, comment } : { ratings: values, comment };
  const seq = ++state.seq;
  state.answers[id] = { values, comment: before.comment };
  show();
  state.saving = state.saving.then(async () => {
    try {
      const r = await call('PUT', '/answers/' + it.item, body);
      if (state.answers[id]) state.answers[id].comment = comment.trim();
      state.answered = r.answered;
      status('Saved item ' + it.item + '.');
    } catch (e) {
      if (seq === state.seq) {
        if (Object.keys(before.values).length) state.answers[id] = before;
        else delete state.answers[id];
      }
      status('Not saved: ' + e.message, true);
    } finally {
      if (item() === it) show();
    }
  });
  return state.saving;
}

function rate(criterion, value) {
  const n = state.sheet.criteria.length;
  state.active = Math.min(state.sheet.criteria.indexOf(criterion) + 1, n - 1);
  return save({ [criterion]: value });
}

async function next() {
  if (state.pos >= state.sheet.items.length) return;
  await state.saving;
  const a = answer();
  const comment = $('comment').value.trim();
  if (comment !== a.comment) {
    if (!Object.keys(a.values).length) {
      status(pairwise() ? 'Choose A, B or tie first: the comment is saved with it.' : 'Rate first: the comment is saved with a rating.', true);
      return;
    }
    await save({});
  }
  state.pos += 1;
  state.active = 0;
  show();
}

function back() {
  if (state.pos === 0) return;
  state.pos -= 1;
  state.active = 0;
  show();
}

document.addEventListener('keydown', (ev) => {
  if (!state.sheet || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const typing = ev.target && ev.target.id === 'comment';
  if (ev.key === 'Enter' && !(typing && ev.shiftKey)) {
    ev.preventDefault();
    next();
    return;
  }
  if (typing || state.pos >= state.sheet.items.length) {
    if (!typing && ev.key === 'ArrowLeft') back();
    return;
  }
  const k = ev.key.toLowerCase();
  if (ev.key === 'ArrowLeft') back();
  else if (pairwise() && ['a', 'b', 't'].includes(k)) save({ preference: k === 't' ? 'tie' : k.toUpperCase() });
  else if (!pairwise() && /^[1-5]$/.test(ev.key) && state.sheet.criteria.length) {
    rate(state.sheet.criteria[state.active], Number(ev.key));
  } else if (!pairwise() && (ev.key === 'ArrowDown' || ev.key === 'ArrowUp')) {
    ev.preventDefault();
    const n = state.sheet.criteria.length;
    state.active = (state.active + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
    show();
  } else return;
  ev.preventDefault();
});

async function start() {
  try {
    state.sheet = await call('GET', '/sheet');
  } catch (e) {
    $('error').hidden = false;
    $('error').textContent = 'Cannot load the sheet: ' + e.message;
    return;
  }
  state.answers = state.sheet.answers;
  state.answered = Object.keys(state.answers).length;
  const first = state.sheet.items.findIndex((it) => !(String(it.item) in state.answers));
  state.pos = first === -1 ? state.sheet.items.length : first;
  $('rater').textContent = 'Rater: ' + state.sheet.rater;
  $('back').addEventListener('click', back);
  $('done-back').addEventListener('click', back);
  $('next').addEventListener('click', next);
  for (const b of $('choices').querySelectorAll('button')) {
    b.addEventListener('click', () => save({ preference: b.dataset.choice }));
  }
  buildScales();
  keysHelp();
  show();
  document.body.dataset.ready = '1';
}

start();
