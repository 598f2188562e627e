// The web console in a real headless Chromium against a real squall server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Squall, browser, loggedIn, ADMIN_PASSWORD } from './squall.mjs';

let squall, chrome;

before(async () => {
  squall = await new Squall().start();
  squall.addUser('olga', 'olga-password-1');
  squall.addUser('eve', 'eve-password-1');
  await squall.restart(); // RBAC assignments are read at start
  chrome = await browser();
});

after(async () => {
  await chrome?.close();
  await squall?.stop();
});

/** Waits until a row of the log shows exactly `text` (optionally on line `line`). */
const waitForLine = (page, text, timeout = 20000, line) =>
  page.waitForFunction(([text, line]) => [...document.querySelectorAll('.log .row')].some((r) => r.querySelector('.text')?.textContent === text && (line === undefined || r.dataset.line === String(line))), [text, line], { timeout });
const rowText = (page, n) => page.locator(`.log .row[data-line="${n}"] .text`).textContent({ timeout: 20000 });

test('logging in: a wrong password is refused with the server\'s message, then the list shows', async () => {
  const context = await chrome.newContext();
  const page = await context.newPage();
  await page.goto(`${squall.url}/`);
  assert.match(page.url(), /\/ui\/$/);
  await page.fill('input[name=username]', 'st2admin');
  await page.fill('input[name=password]', 'wrong');
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('form.login [role=alert]:has-text("Invalid or missing credentials")');
  await page.fill('input[name=password]', ADMIN_PASSWORD);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('table.executions');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'squall-session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
  // A state-changing request with the cookie but without the console's header is refused.
  const forged = await page.evaluate(async () => (await fetch('/api/v1/executions', { method: 'POST', body: '{"action":"core.local","parameters":{"cmd":"true"}}', headers: { 'content-type': 'application/json' } })).status);
  assert.equal(forged, 403);
  await context.close();
});

test('a live action: lines appear one by one, colours and a progress bar render, each line once', async () => {
  const page = await loggedIn(chrome, squall);
  const id = await squall.run("for i in $(seq 1 40); do echo \"line $i\"; sleep 0.05; done; printf '\\033[1;31mred\\033[0m \\033[38;2;10;200;30mtrue\\033[0m\\n'; for p in 10 50 100; do printf \"$p%%\\r\"; sleep 0.1; done; echo; sleep 0.2; echo warn-line >&2; sleep 0.5");
  await page.goto(`${squall.url}/ui/executions/${id}`);
  await page.waitForSelector('.status[data-status="running"]');
  // Seen while the action still runs.
  await waitForLine(page, 'line 10', 20000);
  assert.equal(await page.locator('h1 .status').getAttribute('data-status'), 'running');
  await page.waitForSelector('h1 .status[data-status="succeeded"]', { timeout: 30000 });
  await page.waitForFunction(() => window.__viewer.total === 43);
  // Every line the viewer holds, in order, each once; the last screen ends with the progress bar.
  const held = await page.evaluate(() => Array.from({ length: window.__viewer.total }, (_, n) => window.__viewer.line(n)?.text));
  assert.deepEqual(held.slice(0, 40), Array.from({ length: 40 }, (_, i) => `line ${i + 1}`));
  const texts = await page.locator('.log .row .text').allTextContents();
  assert.deepEqual(texts.slice(-2), ['100%', 'warn-line'], 'the progress bar shows its last state');
  assert.match(await page.locator('.log .row[data-line="43"]').getAttribute('class'), /stderr/);
  const red = page.locator('.log .row[data-line="41"] .text span').first();
  assert.equal(await red.textContent(), 'red');
  const style = await red.evaluate((e) => { const s = getComputedStyle(e); return { color: s.color, weight: s.fontWeight }; });
  assert.notEqual(style.color, await page.locator('.log .row[data-line="40"] .text span').evaluate((e) => getComputedStyle(e).color));
  assert.equal(style.weight, '700');
  const truecolor = await page.locator('.log .row[data-line="41"] .text span', { hasText: 'true' }).evaluate((e) => getComputedStyle(e).color);
  assert.equal(truecolor, 'rgb(10, 200, 30)');
  assert.deepEqual(await page.evaluate(() => ({ gaps: window.__viewer.stats.gaps, dups: window.__viewer.stats.dups })), { gaps: 0, dups: 0 });
  // Filtered to stderr: its one line, in a list.
  await page.selectOption('select[aria-label=Streams]', 'stderr');
  await page.waitForFunction(() => window.__viewer.search?.done);
  assert.deepEqual(await page.locator('.hit-list .row .text').allTextContents(), ['warn-line']);
  await page.context().close();
});

test('live latency: commit → painted, for lines written every 20 ms while the page follows', async () => {
  const page = await loggedIn(chrome, squall);
  const id = await squall.run('sleep 1; for i in $(seq 1 250); do echo "beat $i"; sleep 0.02; done');
  await page.goto(`${squall.url}/ui/executions/${id}`);
  await page.waitForSelector('h1 .status[data-status="succeeded"]', { timeout: 60000 });
  const latency = await page.evaluate(() => window.__viewer.stats.latency.slice().sort((a, b) => a - b));
  assert.ok(latency.length >= 200, `${latency.length} lines measured`);
  const at = (q) => latency[Math.min(latency.length - 1, Math.floor(q * latency.length))];
  console.log(`figures: live commit → painted over ${latency.length} lines: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${latency[latency.length - 1]} ms`);
  await page.context().close();
});

test('the server restarts mid-run: the page carries on with every line exactly once', async () => {
  const page = await loggedIn(chrome, squall);
  const id = await squall.run('for i in $(seq 1 60); do echo "tick $i"; sleep 0.1; done');
  await page.goto(`${squall.url}/ui/executions/${id}`);
  await waitForLine(page, 'tick 5', 20000);
  await squall.restart();
  await waitForLine(page, 'tick 60', 60000);
  await page.waitForSelector('h1 .status[data-status="succeeded"]', { timeout: 30000 });
  const texts = await page.locator('.log .row .text').allTextContents();
  // The last screen: every tick on it is there exactly once and in order.
  const ticks = texts.map((t) => Number(t.replace('tick ', '')));
  assert.deepEqual(ticks, Array.from({ length: ticks.length }, (_, i) => 61 - ticks.length + i));
  const all = await squall.api(`/api/v1/executions/${id}/lines?from=0&count=100`);
  assert.equal(all.total, 60);
  assert.deepEqual(await page.evaluate(() => ({ gaps: window.__viewer.stats.gaps, dups: window.__viewer.stats.dups, total: window.__viewer.total })), { gaps: 0, dups: 0, total: 60 });
  await page.context().close();
});

test('a 1 GB log of 10 million lines: the end shows at once, any line is reachable, search counts every hit', async () => {
  // 10 M lines of 100 bytes by default (SQUALL_TEST_BIG_LINES and _WIDTH change them).
  const lines = Number(process.env.SQUALL_TEST_BIG_LINES || 10_000_000);
  const width = Number(process.env.SQUALL_TEST_BIG_WIDTH || 99);
  const number = (n) => String(n).padStart(width, '0');
  const id = await squall.run(`seq -f '%0${width}.0f' 1 ${lines}; echo needle-one; echo Needle-Two`);
  await squall.waitDone(id, 600);
  const page = await loggedIn(chrome, squall);
  const t0 = Date.now();
  await page.goto(`${squall.url}/ui/executions/${id}`);
  await waitForLine(page, 'Needle-Two', 30000, lines + 2);
  const lastScreen = Date.now() - t0;
  const half = Math.floor(lines / 2);
  const t1 = Date.now();
  await page.fill('input.goto', String(half));
  await page.press('input.goto', 'Enter');
  assert.equal(await rowText(page, half), number(half));
  const goto = Date.now() - t1;
  // The page's own clock: navigation start → last screen painted, Enter → line painted.
  const inPage = await page.waitForFunction(() => {
    const s = window.__viewer.stats;
    return s.firstScreen !== undefined && s.goto !== undefined && { firstScreen: s.firstScreen, goto: s.goto };
  }).then((h) => h.jsonValue());
  // A search whose first hit is near the start (line 12,345) shows it long before the count.
  await page.fill('input[type=search]', '00012345');
  await page.press('input[type=search]', 'Enter');
  await page.waitForFunction(() => window.__viewer.search?.done, null, { timeout: 120000 });
  const early = await page.evaluate(() => ({ first: window.__viewer.search.hits[0], ms: window.__viewer.search.firstHit }));
  assert.equal(early.first, 12344);
  // Search: the planted needles, case-insensitive.
  const t2 = Date.now();
  await page.fill('input[type=search]', 'needle');
  await page.press('input[type=search]', 'Enter');
  await page.waitForFunction(() => window.__viewer.search?.done, null, { timeout: 120000 });
  assert.equal(await page.evaluate(() => window.__viewer.search.count), 2);
  const search = Date.now() - t2;
  assert.match(await page.locator('.hit-info').textContent(), /^1 \/ 2$/);
  assert.equal(await rowText(page, lines + 1), 'needle-one');
  assert.equal(await page.locator(`.log .row[data-line="${lines + 1}"] mark`).textContent(), 'needle');
  await page.click('button[title^="Next hit"]');
  assert.match(await page.locator('.hit-info').textContent(), /^2 \/ 2$/);
  const rows = await page.locator('.row').count();
  assert.ok(rows <= 2000, `${rows} rows in the DOM`);
  const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
  assert.ok(heap < 150 * 1024 * 1024, `JS heap ${heap}`);
  // A link to a line deep in the log works after a reload.
  await page.goto(`${squall.url}/ui/executions/${id}#L${half + 7}`);
  assert.equal(await rowText(page, half + 7), number(half + 7));
  assert.equal(await page.locator(`.log .row[data-line="${half + 7}"]`).getAttribute('class'), 'row selected');
  console.log(`figures: ${lines} lines of ${width + 1} bytes; last screen ${lastScreen} ms (in page ${inPage.firstScreen.toFixed(0)} ms); go to line ${goto} ms (in page ${inPage.goto.toFixed(0)} ms); first hit ${early.ms.toFixed(0)} ms; search ${search} ms; ${rows} rows; heap ${(heap / 1048576).toFixed(1)} MiB`);
  await page.context().close();
});

test('a remote action on two hosts: each line shows its host, and the host filter lists one host\'s lines', async () => {
  const ssh = JSON.parse(process.env.SQUALL_TEST_SSH || 'null');
  assert.ok(ssh, 'SQUALL_TEST_SSH is not set: run these tests through crates/cli/tests/console.rs, which starts two sshd');
  const [a, b] = ssh.hosts.split(',');
  const { id } = await squall.api('/api/v1/executions', { method: 'POST', body: JSON.stringify({ action: 'core.remote', parameters: { ...ssh, cmd: 'echo one; echo two; echo three' } }) });
  assert.equal((await squall.waitDone(id)).status, 'succeeded');
  const page = await loggedIn(chrome, squall);
  await page.goto(`${squall.url}/ui/executions/${id}`);
  await waitForLine(page, 'three');
  for (const host of [a, b]) assert.equal(await page.locator(`.log .row .host[data-host="${host}"]`).count(), 3, `rows of ${host}`);
  await page.selectOption('select[aria-label=Hosts]', b);
  await page.waitForFunction(() => window.__viewer.search?.done);
  const rows = page.locator('.hit-list .row');
  assert.deepEqual(await rows.locator('.text').allTextContents(), ['one', 'two', 'three']);
  assert.equal(await rows.locator(`.host[data-host="${b}"]`).count(), 3);
  await page.context().close();
});

test('wrapping: a long line takes several rows, the last line stays in view, and the choice is remembered', async () => {
  const page = await loggedIn(chrome, squall);
  const id = await squall.run("printf 'long:%0900d\\n' 0; seq 1 60; echo the-end");
  await squall.waitDone(id);
  await page.goto(`${squall.url}/ui/executions/${id}`);
  await waitForLine(page, 'the-end');
  await page.click('button[title="Wrap long lines"]');
  await page.goto(`${squall.url}/ui/executions/${id}#L1`);
  await waitForLine(page, 'long:' + '0'.repeat(900));
  // The height settles once the layout has (a resize repaints the rows).
  const tall = await page.waitForFunction(() => {
    const h = document.querySelector('.log .row[data-line="1"]')?.getBoundingClientRect().height ?? 0;
    return h > 18 * 3 && h;
  }, null, { timeout: 5000 }).then((h) => h.jsonValue(), () => 0);
  assert.ok(tall > 18 * 3, `the wrapped row is ${tall}px high`);
  await page.locator('.log').focus();
  await page.keyboard.press('End');
  await waitForLine(page, 'the-end');
  const [row, box] = await Promise.all([
    page.locator('.log .row[data-line="62"]').evaluate((r) => r.getBoundingClientRect().bottom),
    page.locator('.log').evaluate((l) => l.getBoundingClientRect().bottom),
  ]);
  assert.ok(row <= box + 1 && row > box - 40, `last row ends at ${row}, the log at ${box}`);
  await page.context().close();
});

test('a user without permission sees "not allowed" and no output; a secret never reaches the page', async () => {
  const secretRun = await squall.api('/api/v1/executions', { method: 'POST', body: JSON.stringify({ action: 'demo.greet', parameters: { name: 'world' } }) });
  await squall.waitDone(secretRun.id);
  const admin = await loggedIn(chrome, squall);
  await admin.goto(`${squall.url}/ui/executions/${secretRun.id}`);
  await waitForLine(admin, 'arg --name=world');
  const html = await admin.content();
  assert.ok(!html.includes('sq-SECRET-4417'), 'the secret parameter is in the page');
  assert.ok((await admin.locator('.log .row .text').allTextContents()).some((t) => t.includes('********')), 'the secret shows masked');
  await admin.context().close();

  const eve = await loggedIn(chrome, squall, 'eve', 'eve-password-1');
  await eve.goto(`${squall.url}/ui/executions/${secretRun.id}`);
  await eve.waitForSelector('.not-allowed');
  assert.equal(await eve.locator('.log .row').count(), 0);
  assert.ok(!(await eve.content()).includes('arg --name=world'));
  await eve.context().close();
});

test('cancel and re-run from the page; the run form rejects a bad value with the server\'s message', async () => {
  const page = await loggedIn(chrome, squall, 'olga', 'olga-password-1');
  const id = await squall.run('echo started; sleep 60');
  await page.goto(`${squall.url}/ui/executions/${id}`);
  await waitForLine(page, 'started');
  await page.click('button.cancel');
  await page.waitForSelector('h1 .status[data-status="canceled"]', { timeout: 30000 });
  await page.click('button.rerun');
  await page.waitForURL((url) => !url.pathname.endsWith(id), { timeout: 10000 });
  await waitForLine(page, 'started', 20000);
  await page.click('button.cancel');

  await page.goto(`${squall.url}/ui/run/demo.greet`);
  assert.equal(await page.locator('#p-token').getAttribute('type'), 'password');
  assert.equal(await page.locator('#p-token').inputValue(), '', 'secret defaults are not shown');
  assert.equal(await page.locator('#p-times').inputValue(), '2');
  await page.fill('#p-name', 'form');
  await page.fill('#p-times', 'many');
  await page.click('form.run button[type=submit]');
  await page.waitForSelector('form.run [role=alert]:has-text("many")');
  assert.equal(await page.locator('form.run [role=alert]').textContent(), "'many' is not of type 'integer'");
  await page.fill('#p-times', '3');
  await page.selectOption('#p-mood', '"happy"');
  await page.click('form.run button[type=submit]');
  await waitForLine(page, 'arg --times=3', 20000);
  assert.ok((await page.locator('.log .row .text').allTextContents()).includes('arg --mood=happy'));
  await page.context().close();
});
