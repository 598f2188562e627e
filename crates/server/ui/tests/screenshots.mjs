// Makes the console's screenshots in docs/console: the executions list, a live execution and a
// search, against a real server with a few demonstration runs.
//
//   SQUALL_BIN=target/debug/squall node crates/server/ui/tests/screenshots.mjs docs/console

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Squall, browser, loggedIn } from './squall.mjs';

const out = resolve(process.argv[2] || 'screenshots');
mkdirSync(out, { recursive: true });

// A build-like log: colours, a `\r` progress bar, a warning on stderr and a failure.
const BUILD = String.raw`
printf '\033[1;34m==>\033[0m Fetching sources\n'
for i in 10 40 70 100; do printf '\rdownloading  [%-10s] %3d%%' "$(printf '#%.0s' $(seq 1 $((i / 10))))" $i; done; echo
printf '\033[32m✔\033[0m checked out \033[33mrelease/2.4\033[0m at 4f2c9e1\n'
for n in $(seq 1 40); do printf '   compiling module-%02d \033[2m(%d ms)\033[0m\n' $n $((n * 37 % 400)); done
echo 'warning: module-17 uses a deprecated option' >&2
printf '\033[1;34m==>\033[0m Running tests\n'
for n in $(seq 1 30); do printf '   test suite-%02d ... \033[32mok\033[0m\n' $n; done
printf '   test suite-31 ... \033[1;31mFAILED\033[0m\n'
echo 'error: 1 of 31 suites failed (see suite-31 above)' >&2
exit 1`;

/** Scrolls the page so that the viewer's toolbar is at the top and its log fills the window. */
const showLog = (page) => page.evaluate(() => document.querySelector('.toolbar').scrollIntoView());

const squall = await new Squall().start();
const chrome = await browser();
try {
  await squall.waitDone(await squall.run('echo "backup of /srv done: 14 files"'));
  await squall.waitDone(await squall.run(BUILD));
  await squall.waitDone(await squall.run('uptime; df -h / | tail -n 1'));
  await squall.api('/api/v1/executions', { method: 'POST', body: JSON.stringify({ action: 'demo.greet', parameters: { name: 'world' } }) });
  const live = await squall.run(String.raw`for n in $(seq 1 400); do printf 'deploying host-%03d \033[36m%s\033[0m\n' $n "$(date +%T)"; sleep 0.05; done`);

  const page = await loggedIn(chrome, squall);
  await page.emulateMedia({ colorScheme: 'light' });
  await page.waitForSelector(`table.executions tr:has-text("running")`);
  await page.screenshot({ path: join(out, 'executions.png') });

  await page.goto(`${squall.url}/ui/executions/${live}`);
  await page.waitForFunction(() => (window.__viewer?.total ?? 0) > 60);
  await showLog(page);
  await page.screenshot({ path: join(out, 'live.png') });

  const build = (await squall.api('/api/v1/executions?limit=10')).find((e) => e.parameters?.cmd?.includes('Fetching sources'));
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(`${squall.url}/ui/executions/${build.id}`);
  await page.fill('input[type=search]', 'suite-3');
  await page.press('input[type=search]', 'Enter');
  await page.waitForFunction(() => window.__viewer.search?.done);
  await showLog(page);
  await page.screenshot({ path: join(out, 'search.png') });
  console.log(`screenshots in ${out}`);
} finally {
  await chrome.close();
  await squall.stop();
}
