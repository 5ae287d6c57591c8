// The examples in headless Chromium, served the way `examples/run` serves them
// (python3's http.server) and talking to the test's broker (?broker=).
//   chat: two people see each other in the presence list, one's typing shows at the
//         other's, a message arrives, a third who joins later gets it from history.
//   device-chart: a device that publishes appears in the legend with its value.
// Usage: node examples.js BIN CONFIG HTTP_PORT MQTT_PORT LOG EXAMPLES_DIR STATIC_PORT
'use strict';
const { execFileSync } = require('child_process');
const { sleep, fail, deadline, launchBrowser, Broker, staticServer } = require('./lib/harness');

const [bin, config, http, mqttPort, log, dir, staticPort] = process.argv.slice(2);
deadline(60000);
const report = {};


async function person(browser, name, example) {
  const page = await browser.newPage();
  page.on('dialog', (d) => d.accept(name));
  page.on('pageerror', (e) => fail(`${name}: page error ${e.message}`));
  await page.goto(`http://127.0.0.1:${staticPort}/${example}/?broker=127.0.0.1:${http}`);
  return page;
}
async function until(page, what, fn, arg) {
  try { await page.waitForFunction(fn, arg, { timeout: 10000, polling: 25 }); } catch { fail(`not shown: ${what}`); }
}

(async () => {
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  await staticServer(dir, staticPort);
  const browser = await launchBrowser();
  try {
    const alice = await person(browser, 'alice', 'chat');
    const bob = await person(browser, 'bob', 'chat');
    const here = (page, names) => until(page, `members ${names}`, (want) => want.every((n) => [...document.querySelectorAll('#members li')].some((li) => li.textContent.startsWith(n))), names);
    await here(alice, ['alice', 'bob']);
    await here(bob, ['alice', 'bob']);
    await alice.type('#text', 'hel');
    await until(bob, 'alice typing', () => document.getElementById('typing').textContent === 'alice is typing…');
    await alice.fill('#text', 'hello bob');
    await alice.press('#text', 'Enter');
    await until(bob, 'the message', () => [...document.querySelectorAll('#log li')].some((li) => li.textContent.endsWith('alicehello bob')));
    const carol = await person(browser, 'carol', 'chat');
    await until(carol, 'history on join', () => [...document.querySelectorAll('#log li.old')].some((li) => li.textContent.endsWith('alicehello bob')));
    await here(alice, ['alice', 'bob', 'carol']);
    report.chat = 'ok';

    const chart = await person(browser, 'viewer', 'device-chart');
    await sleep(500);
    for (const c of [21.5, 22, 22.5]) {
      execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-t', 'demo/press-9/temp', '-m', JSON.stringify({ c })]);
      await sleep(100);
    }
    await until(chart, 'the device in the legend', () => document.getElementById('legend').textContent.includes('press-9 22.5 °C'));
    report.chart = 'ok';
    console.log(JSON.stringify(report));
  } finally {
    await browser.close();
    await broker.stop('SIGKILL');
  }
  process.exit(0);
})();
