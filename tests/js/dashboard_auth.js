// The dashboard behind browser auth ([auth] browser = "jwt"): without a token it asks
// for one (and /vitals answers 401); with a pasted token it connects as its user and
// its charts fill; with the token as the sb_token cookie it connects at once; a token
// that does not grant the tree's room says so instead of showing an empty tree.
// Usage: node dashboard_auth.js BIN CONFIG HTTP_PORT MQTT_PORT LOG
'use strict';
const { execFileSync } = require('child_process');
const { fail, deadline, launchBrowser, Broker } = require('./lib/harness');

const [bin, config, http, mqttPort, log] = process.argv.slice(2);
deadline(60000);
const base = `http://127.0.0.1:${http}/`;
const mint = (...rooms) => execFileSync(bin, ['--config', config, 'token', '--sub', 'alice', '--presence', ...rooms.flatMap((r) => ['--room', r])]).toString().trim();
async function until(page, what, fn, arg) {
  try { await page.waitForFunction(fn, arg, { timeout: 10000, polling: 25 }); } catch { fail(`not shown: ${what}`); }
}

(async () => {
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-t', 'plant/line1/temp', '-m', '21.5', '-r']);
  const browser = await launchBrowser();
  const report = {};
  try {
    const page = await browser.newPage();
    await page.goto(base);
    await until(page, 'the sign-in form', () => !document.getElementById('login').hidden);
    report.status_without_token = await page.evaluate(() => document.getElementById('status').textContent);
    report.vitals_without_token = await page.evaluate(async () => (await fetch('/vitals')).status);
    await page.fill('#token', mint('#'));
    await page.click('#login button');
    await until(page, 'connected as alice', () => document.getElementById('status').textContent === 'connected as alice');
    await until(page, 'the retained topic', () => !!document.querySelector('.trow[data-topic="plant/line1/temp"]'));
    await until(page, 'the vitals', () => /^\d+$/.test(document.getElementById('v-conn').textContent));
    report.form_hidden = await page.evaluate(() => document.getElementById('login').hidden);
    await page.close();

    const context = await browser.newContext();
    await context.addCookies([{ name: 'sb_token', value: mint('#'), url: base }]);
    const cookied = await context.newPage();
    await cookied.goto(base);
    await until(cookied, 'connected by cookie', () => document.getElementById('status').textContent === 'connected as alice');
    report.cookie = 'connected as alice';
    await context.close();

    const narrow = await browser.newPage();
    await narrow.goto(base);
    await until(narrow, 'the sign-in form', () => !document.getElementById('login').hidden);
    await narrow.fill('#token', mint('plant/#'));
    await narrow.click('#login button');
    await until(narrow, 'why the tree is empty', () => document.getElementById('truncated').textContent.includes('forbidden'));
    report.narrow = await narrow.evaluate(() => document.getElementById('truncated').textContent);
    await narrow.goto(`${base}?room=plant/%23`);
    await until(narrow, 'the tree of the granted room', () => !!document.querySelector('.trow[data-topic="plant/line1/temp"]'));
    console.log(JSON.stringify(report));
  } finally {
    await browser.close();
    await broker.stop('SIGKILL');
  }
  process.exit(0);
})();
