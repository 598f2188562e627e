// A real squall server for the browser tests: started from SQUALL_BIN in a temporary directory,
// with authentication and RBAC on, restartable on the same port.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const ADMIN_PASSWORD = 'console-admin-pass';
const BIN = process.env.SQUALL_BIN;
const CHROMIUM = process.env.SQUALL_TEST_CHROMIUM || '/usr/bin/chromium';

function write(path, text) {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
}

export class Squall {
  constructor() {
    if (!BIN) throw new Error('SQUALL_BIN must name the squall binary (the Rust test crates/cli/tests/console.rs sets it)');
    this.dir = mkdtempSync(join(tmpdir(), 'squall-console-'));
    this.port = 0;
    const rbac = join(this.dir, 'rbac');
    write(join(rbac, 'roles/operator.yaml'), 'name: operator\npermission_grants:\n  - resource_uid: pack:core\n    permission_types: [action_execute, action_view, execution_all]\n  - resource_uid: pack:demo\n    permission_types: [action_execute, action_view, execution_all]\n  - permission_types: [action_list, execution_list, stream_view]\n');
    write(join(rbac, 'assignments/olga.yaml'), 'username: olga\nroles: [operator]\n');
    const pack = join(this.dir, 'packs/demo');
    write(join(pack, 'pack.yaml'), 'name: demo\n');
    write(join(pack, 'actions/greet.yaml'), [
      'name: greet', 'runner_type: local-shell-script', 'entry_point: greet.sh', 'description: Greets, with a secret',
      'parameters:', '  name:', '    type: string', '    required: true', '  times:', '    type: integer', '    default: 2',
      '  loud:', '    type: boolean', '  mood:', '    type: string', '    enum: [calm, happy]', '    default: calm',
      '  token:', '    type: string', '    secret: true', '    default: "sq-SECRET-4417"', ''].join('\n'));
    write(join(pack, 'actions/greet.sh'), '#!/bin/sh\nfor a in "$@"; do echo "arg $a"; done\n');
    this.env = {
      ...process.env,
      SQUALL_AUTH__ENABLE: 'true',
      SQUALL_ADMIN_PASSWORD: ADMIN_PASSWORD,
      SQUALL_RBAC__ENABLE: 'true',
      SQUALL_RBAC__DEFINITIONS_PATH: rbac,
      SQUALL_CONTENT__PACKS_BASE_PATHS: join(this.dir, 'packs'),
      SQUALL_ACTIONRUNNER__KILL_GRACE_PERIOD: '2',
      SQUALL_LOG: 'warn,squall=info',
    };
  }

  async start() {
    this.child = spawn(BIN, ['server', '--listen', `127.0.0.1:${this.port}`, '--data-dir', join(this.dir, 'data')], { env: this.env, stdio: ['ignore', 'ignore', 'pipe'] });
    const lines = createInterface({ input: this.child.stderr });
    const address = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('squall did not announce its address in 30 s')), 30000);
      lines.on('line', (line) => {
        if (process.env.SQUALL_TEST_SERVER_LOG) console.error('[server]', line);
        const m = /listening on http:\/\/([0-9.]+:\d+)/.exec(line);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      this.child.on('exit', (code) => reject(new Error(`squall exited with ${code}`)));
    });
    this.port = Number(address.split(':')[1]);
    this.url = `http://${address}`;
    return this;
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  addUser(name, password) {
    execFileSync(BIN, ['user', 'add', name, '--data-dir', join(this.dir, 'data')], { input: password + '\n', env: this.env, stdio: ['pipe', 'ignore', 'inherit'] });
  }

  async token(user = 'st2admin', password = ADMIN_PASSWORD) {
    const resp = await fetch(`${this.url}/auth/v1/tokens`, { method: 'POST', headers: { authorization: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64'), 'content-type': 'application/json' }, body: '{}' });
    if (resp.status !== 201) throw new Error(`login failed: ${resp.status}`);
    return (await resp.json()).token;
  }

  async api(path, options = {}) {
    this.adminToken ??= await this.token();
    const resp = await fetch(`${this.url}${path}`, { ...options, headers: { 'x-auth-token': this.adminToken, 'content-type': 'application/json', ...(options.headers || {}) } });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`${path}: ${resp.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async run(cmd) {
    return (await this.api('/api/v1/executions', { method: 'POST', body: JSON.stringify({ action: 'core.local', parameters: { cmd, timeout: 600 } }) })).id;
  }

  async waitDone(id, seconds = 120) {
    const deadline = Date.now() + seconds * 1000;
    for (;;) {
      const e = await this.api(`/api/v1/executions/${id}`);
      if (['succeeded', 'failed', 'timeout', 'canceled', 'abandoned'].includes(e.status)) return e;
      if (Date.now() > deadline) throw new Error(`${id} still ${e.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function browser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--enable-precise-memory-info'],
  });
}

/** A page logged in as `user` (one browser context each: cookies and SSE connections apart). */
export async function loggedIn(b, squall, user = 'st2admin', password = ADMIN_PASSWORD) {
  const context = await b.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`${squall.url}/ui/`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('table.executions');
  return page;
}
