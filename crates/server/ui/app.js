// squall's web console: pages, routing and the API client. Every byte shown comes from the
// same API, with the same authorisation, as the CLI's; text only ever goes in as text.

import { Viewer, isDone, lastLinesPath } from './viewer.js';

const main = document.getElementById('main');
let current = null; // the page's cleanup

/**
 * Calls the API; throws an Error carrying the server's faultstring and status. A 401 shows the
 * login form, unless the request was sent `early`, before the session was known.
 */
export async function api(path, { early, ...options } = {}) {
  const headers = { 'x-squall-console': '1', ...(options.body ? { 'content-type': 'application/json' } : {}) };
  const resp = await fetch(path, { credentials: 'same-origin', ...options, headers });
  const text = await resp.text();
  const body = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const error = new Error((body && body.faultstring) || `${resp.status} ${resp.statusText}`);
    error.status = resp.status;
    if (resp.status === 401 && !path.startsWith('/ui/session') && !early) showLogin();
    throw error;
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const statusBadge = (status) => el('span', { class: `status status-${status}`, 'data-status': status }, status);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');
function duration(e) {
  if (!e.start_timestamp) return '';
  const end = e.end_timestamp ? Date.parse(e.end_timestamp) : Date.now();
  const s = (end - Date.parse(e.start_timestamp)) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function navigate(path) {
  history.pushState(null, '', path);
  route();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-nav]');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', () => route());

function page(title, ...content) {
  if (current) current();
  current = null;
  document.title = title ? `${title} · squall` : 'squall';
  main.replaceChildren(...content);
}

function problem(e) {
  const forbidden = e.status === 403;
  return el('p', { class: forbidden ? 'problem not-allowed' : 'problem' }, forbidden ? `Not allowed: ${e.message}` : e.message);
}

// ---- session --------------------------------------------------------------------------

async function whoami() {
  try {
    const s = await api('/ui/session');
    const who = document.getElementById('who');
    who.replaceChildren(s.user, s.auth ? el('button', { type: 'button', onclick: logout }, 'Log out') : '');
    return s;
  } catch {
    return null;
  }
}

function showLogin() {
  const error = el('p', { class: 'problem', role: 'alert' });
  const user = el('input', { name: 'username', autocomplete: 'username', required: true });
  const password = el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = el('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api('/ui/session', { method: 'POST', body: JSON.stringify({ username: user.value, password: password.value }) });
      await whoami();
      route();
    } catch (err) { error.textContent = err.message; }
  } },
  el('h1', {}, 'Log in'), el('label', {}, 'User', user), el('label', {}, 'Password', password), el('button', { type: 'submit' }, 'Log in'), error);
  page('Log in', form);
  user.focus();
}

async function logout() {
  await api('/ui/session', { method: 'DELETE' }).catch(() => {});
  document.getElementById('who').replaceChildren();
  showLogin();
}

// ---- executions ---------------------------------------------------------------------

async function executionsPage() {
  const params = new URLSearchParams(location.search);
  const filters = el('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (v) q.set(k, v);
    navigate(`/ui/?${q}`);
  } });
  const field = (name, label, input) => { input.name = name; input.value = params.get(name) || ''; filters.append(el('label', {}, label, input)); };
  const status = el('select', {}, el('option', { value: '' }, 'any'), ...['requested', 'scheduled', 'running', 'succeeded', 'failed', 'timeout', 'canceling', 'canceled', 'abandoned'].map((s) => el('option', { value: s }, s)));
  field('status', 'Status', status);
  field('action', 'Action', el('input', { placeholder: 'pack.action' }));
  field('user', 'User', el('input'));
  field('timestamp_gt', 'After', el('input', { type: 'datetime-local' }));
  filters.append(el('button', { type: 'submit' }, 'Filter'));
  const body = el('tbody');
  const pager = el('div', { class: 'pager' });
  page('Executions', el('h1', {}, 'Executions'), filters, el('table', { class: 'executions' },
    el('thead', {}, el('tr', {}, ['Execution', 'Action', 'Status', 'User', 'Started', 'Duration'].map((h) => el('th', {}, h)))), body), pager);
  const limit = 50, offset = parseInt(params.get('offset') || '0', 10);
  const load = async () => {
    const q = new URLSearchParams({ limit, offset, exclude_attributes: 'result,trigger_instance', parent: 'null', sort_desc: 'true' });
    for (const k of ['status', 'action', 'user']) if (params.get(k)) q.set(k, params.get(k));
    if (params.get('timestamp_gt')) q.set('timestamp_gt', new Date(params.get('timestamp_gt')).toISOString());
    const resp = await fetch(`/api/v1/executions?${q}`, { credentials: 'same-origin' });
    const list = await resp.json();
    if (!resp.ok) { if (resp.status === 401) showLogin(); else body.replaceChildren(el('tr', {}, el('td', { colspan: 6 }, problem({ status: resp.status, message: list.faultstring })))); return; }
    const total = parseInt(resp.headers.get('x-total-count') || String(list.length), 10);
    body.replaceChildren(...list.map((e) => el('tr', { 'data-id': e.id },
      el('td', {}, el('a', { href: `/ui/executions/${e.id}`, 'data-nav': true }, e.id)),
      el('td', {}, e.action?.ref ?? ''), el('td', {}, statusBadge(e.status)), el('td', {}, e.context?.user ?? ''),
      el('td', {}, when(e.start_timestamp)), el('td', {}, duration(e)))));
    if (!list.length) body.append(el('tr', {}, el('td', { colspan: 6, class: 'quiet' }, 'No executions.')));
    const link = (label, to) => { const q = new URLSearchParams(params); q.set('offset', to); return el('a', { href: `/ui/?${q}`, 'data-nav': true }, label); };
    pager.replaceChildren(offset > 0 ? link('← Newer', Math.max(0, offset - limit)) : '', ` ${offset + 1}–${Math.min(offset + limit, total)} of ${total} `, offset + limit < total ? link('Older →', offset + limit) : '');
  };
  await load();
  // New executions and status changes arrive on the event stream; the page re-reads the list.
  const source = new EventSource('/stream?events=st2.execution__create,st2.execution__update');
  let pending = null;
  const reload = () => { if (!pending) pending = setTimeout(() => { pending = null; load(); }, 300); };
  source.addEventListener('st2.execution__create', reload);
  source.addEventListener('st2.execution__update', reload);
  current = () => { source.close(); clearTimeout(pending); };
}

/** An execution without its result, which can be a MiB of output: shown only when opened. */
const factsPath = (id) => `/api/v1/executions/${id}?exclude_attributes=result`;

/** The execution page's first requests, sent with the session's: one round trip instead of three. */
function askEarly(id) {
  const early = { execution: api(factsPath(id), { early: true }), lines: api(lastLinesPath(id), { early: true }) };
  for (const p of Object.values(early)) p.catch(() => {}); // awaited later, or not at all without a session
  return early;
}

async function executionPage(id, early = askEarly(id)) {
  let e;
  try {
    e = await early.execution;
  } catch (err) {
    page('Execution', el('h1', {}, 'Execution'), problem(err));
    return;
  }
  const status = el('span', {}, statusBadge(e.status));
  const times = el('dl', { class: 'facts' });
  const actions = el('div', { class: 'actions' });
  const result = el('details', { class: 'result', ontoggle: () => showResult() }, el('summary', {}, 'Result'), el('pre', {}, ''));
  const showResult = async () => {
    if (!result.open) return;
    const pre = result.querySelector('pre');
    try {
      const x = await api(`/api/v1/executions/${id}?include_attributes=result`);
      pre.textContent = x.result === undefined ? '(none yet)' : JSON.stringify(x.result, null, 2);
    } catch (err) { pre.textContent = err.message; }
  };
  const renderFacts = (x) => {
    times.replaceChildren(
      el('dt', {}, 'Action'), el('dd', {}, el('a', { href: `/ui/run/${x.action.ref}`, 'data-nav': true }, x.action.ref)),
      el('dt', {}, 'User'), el('dd', {}, x.context?.user ?? ''),
      el('dt', {}, 'Started'), el('dd', {}, when(x.start_timestamp)),
      el('dt', {}, 'Ended'), el('dd', {}, when(x.end_timestamp)),
      el('dt', {}, 'Duration'), el('dd', {}, duration(x)),
      el('dt', {}, 'Parameters'), el('dd', {}, el('pre', { class: 'params' }, JSON.stringify(x.parameters ?? {}, null, 2))));
    status.replaceChildren(statusBadge(x.status));
    actions.replaceChildren(
      isDone(x.status) ? '' : el('button', { type: 'button', class: 'cancel', onclick: cancel }, 'Cancel'),
      el('button', { type: 'button', class: 'rerun', onclick: rerun }, 'Re-run'), message);
  };
  const message = el('span', { class: 'problem', role: 'alert' });
  const cancel = async () => {
    try { await api(`/api/v1/executions/${id}`, { method: 'DELETE' }); } catch (err) { message.textContent = err.message; }
  };
  const rerun = async () => {
    try { const next = await api(`/api/v1/executions/${id}/re_run`, { method: 'POST', body: '{}' }); navigate(`/ui/executions/${next.id}`); } catch (err) { message.textContent = err.message; }
  };
  renderFacts(e);
  const output = el('section', { class: 'output' });
  page(e.action.ref, el('h1', {}, e.action.ref, ' ', status), el('p', { class: 'quiet' }, e.id), times, actions, output, result);
  let last = e.status;
  const hosts = e.runner?.name?.startsWith('remote-') ? String(e.parameters?.hosts ?? '').split(',').map((h) => h.trim()).filter(Boolean) : [];
  const viewer = new Viewer(output, e.id, {
    api,
    hosts,
    onStatus: async (s) => {
      if (s === last) return;
      last = s;
      status.replaceChildren(statusBadge(s));
      try { renderFacts(await api(factsPath(id))); showResult(); } catch { /* shown on the next change */ }
    },
  });
  current = () => viewer.stop();
  try { await viewer.start(true, early.lines); } catch (err) { output.replaceChildren(problem(err)); }
}

// ---- running an action ------------------------------------------------------------------

async function actionsPage() {
  let actions;
  try { actions = await api('/api/v1/actions?exclude_attributes=parameters'); } catch (err) { page('Actions', el('h1', {}, 'Run an action'), problem(err)); return; }
  const filter = el('input', { type: 'search', placeholder: 'Filter actions', 'aria-label': 'Filter actions' });
  const list = el('ul', { class: 'action-list' });
  const show = () => list.replaceChildren(...actions.filter((a) => a.ref.includes(filter.value)).map((a) =>
    el('li', {}, el('a', { href: `/ui/run/${a.ref}`, 'data-nav': true }, a.ref), ' ', el('span', { class: 'quiet' }, a.description ?? ''))));
  filter.oninput = show;
  show();
  page('Run an action', el('h1', {}, 'Run an action'), filter, list);
}

/** One input per parameter of the action's schema. */
function parameterField(name, spec) {
  const id = `p-${name}`;
  const label = el('label', { for: id }, name, spec.required ? el('span', { class: 'required', title: 'required' }, ' *') : '');
  let input;
  if (spec.enum) {
    input = el('select', { id }, spec.required ? '' : el('option', { value: '' }, ''), ...spec.enum.map((v) => el('option', { value: JSON.stringify(v) }, String(v))));
    if (spec.default !== undefined) input.value = JSON.stringify(spec.default);
  } else if (spec.type === 'boolean') {
    input = el('input', { id, type: 'checkbox' });
    input.checked = !!spec.default;
  } else if (spec.type === 'object' || spec.type === 'array') {
    input = el('textarea', { id, rows: 3, placeholder: spec.type === 'array' ? '["…"]' : '{"…": …}' });
    if (spec.default !== undefined) input.value = JSON.stringify(spec.default);
  } else {
    input = el('input', { id, type: spec.secret ? 'password' : 'text', autocomplete: 'off', inputmode: spec.type === 'integer' || spec.type === 'number' ? 'decimal' : undefined });
    if (spec.default !== undefined && spec.default !== null && !spec.secret) input.value = String(spec.default);
  }
  input.name = name;
  if (spec.immutable) { input.disabled = true; input.title = 'immutable: set by the action'; }
  const value = () => {
    if (spec.immutable) return undefined;
    if (spec.enum) return input.value === '' ? undefined : JSON.parse(input.value);
    if (spec.type === 'boolean') return input.checked;
    if (input.value === '') return undefined;
    if (spec.type === 'object' || spec.type === 'array') {
      try { return JSON.parse(input.value); } catch { throw new Error(`${name}: not valid JSON`); }
    }
    // A number that does not parse goes as typed: the server says what is wrong with it.
    if (spec.type === 'integer' && /^-?\d+$/.test(input.value)) return Number(input.value);
    if (spec.type === 'number' && input.value.trim() !== '' && Number.isFinite(Number(input.value))) return Number(input.value);
    return input.value;
  };
  return { row: el('div', { class: 'field' }, label, input, spec.description ? el('small', { class: 'quiet' }, spec.description) : ''), value };
}

async function runPage(ref) {
  let action;
  try { action = await api(`/api/v1/actions/${ref}`); } catch (err) { page('Run', el('h1', {}, ref), problem(err)); return; }
  const fields = Object.entries(action.parameters ?? {}).sort(([a, x], [b, y]) => (y.required ? 1 : 0) - (x.required ? 1 : 0) || (x.position ?? 99) - (y.position ?? 99) || a.localeCompare(b))
    .map(([name, spec]) => [name, parameterField(name, spec)]);
  const error = el('p', { class: 'problem', role: 'alert' });
  const form = el('form', { class: 'run', onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const parameters = {};
      for (const [name, f] of fields) { const v = f.value(); if (v !== undefined) parameters[name] = v; }
      const created = await api('/api/v1/executions', { method: 'POST', body: JSON.stringify({ action: ref, parameters }) });
      navigate(`/ui/executions/${created.id}`);
    } catch (err) { error.textContent = err.message; }
  } }, fields.map(([, f]) => f.row), el('button', { type: 'submit' }, 'Run'), error);
  page(`Run ${ref}`, el('h1', {}, 'Run ', ref), el('p', { class: 'quiet' }, action.description ?? ''), form);
}

// ---- routing ------------------------------------------------------------------------------

async function route() {
  const path = location.pathname.replace(/\/+$/, '');
  const execution = /^\/ui\/executions\/([0-9a-f]{24})$/.exec(path)?.[1];
  const early = execution && askEarly(execution);
  const session = await whoami();
  if (!session) { showLogin(); return; }
  let m;
  if (execution) return executionPage(execution, early);
  if ((m = /^\/ui\/run\/([\w.-]+)$/.exec(path))) return runPage(m[1]);
  if (path === '/ui/actions') return actionsPage();
  return executionsPage();
}

route();
