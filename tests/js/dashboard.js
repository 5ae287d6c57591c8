// The dashboard at `/` in headless Chromium, as a user tries it: a mosquitto_pub shows
// in the topic tree within a second (with retained flag, binary marker, rate, age); a
// device goes online, then offline with its reason; the inspector streams, pauses and
// publishes; a broker restart shows a banner and then recovers; the page fits a phone;
// 10 000 retained topics render in a virtualised list without freezing the page.
// Screenshots (desktop and phone, light and dark) go to SHOTS_DIR.
// Usage: node dashboard.js BIN CONFIG HTTP_PORT MQTT_PORT LOG SHOTS_DIR json|msgpack
'use strict';
const { execFileSync } = require('child_process');
const path = require('path');
const mqtt = require('mqtt');
const { sleep, fail, deadline, launchBrowser, Broker } = require('./lib/harness');

const [bin, config, http, mqttPort, log, shots, protocol] = process.argv.slice(2);
deadline(150000);
const base = `http://127.0.0.1:${http}/?protocol=${protocol}`;
const pub = (...args) => execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, ...args]);
const check = (ok, why) => { if (!ok) fail(why); };
const report = {};

async function text(page, selector) {
  return page.evaluate((s) => document.querySelector(s)?.textContent ?? null, selector);
}
async function until(page, what, fn, arg, ms = 10000) {
  try { await page.waitForFunction(fn, arg, { timeout: ms, polling: 20 }); } catch { fail(`the page did not show ${what} within ${ms} ms`); }
}
const rowValue = (topic) => `.trow[data-topic="${topic}"] .val`;

async function shoot(browser, name, viewport, colorScheme) {
  const page = await browser.newPage({ viewport, colorScheme });
  await page.goto(base);
  await until(page, 'connected', () => document.getElementById('status').dataset.state === 'connected');
  await until(page, 'the devices', () => document.querySelectorAll('#devices li').length > 0);
  await page.fill('#insp-room', 'plant/#');
  await page.click('#insp-join button');
  await sleep(400);
  // Messages through two vitals samples, so the charts and rates show traffic.
  for (let i = 0; i < 18; i++) { pub('-t', `plant/line${1 + (i % 3)}/speed`, '-m', JSON.stringify({ rpm: 1190 + i * 7 })); await sleep(200); }
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, `dashboard-${name}-${colorScheme}.png`) });
  await page.close();
}

(async () => {
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  const browser = await launchBrowser();
  let device;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (e) => fail(`page error: ${e.message}`));
    await page.goto(base);
    await until(page, 'connected', () => document.getElementById('status').dataset.state === 'connected');

    // A mosquitto_pub appears in the tree within a second.
    const t0 = Date.now();
    pub('-t', 'plant/line1/speed', '-m', '{"rpm": 1200}');
    await until(page, 'the published value', (s) => document.querySelector(s)?.textContent.includes('{"rpm":1200}'), rowValue('plant/line1/speed'), 1000);
    report.publish_to_tree_ms = Date.now() - t0;

    pub('-t', 'plant/line1/temp', '-m', '21.5', '-r');
    execFileSync('sh', ['-c', `printf '\\377\\000\\001' | mosquitto_pub -h 127.0.0.1 -p ${mqttPort} -t raw/bin -s -r`]);
    pub('-t', 'sensors/hall/env', '-r', '-m', JSON.stringify({ readings: Array.from({ length: 40 }, (_, i) => i), unit: 'celsius', where: 'hall' }));
    await until(page, 'the retained flag', (s) => document.querySelector(s)?.textContent.startsWith('retained21.5'), rowValue('plant/line1/temp'));
    await until(page, 'the binary marker', (s) => document.querySelector(s)?.textContent === 'retainedbin 3 Bff 00 01', rowValue('raw/bin'));
    for (let i = 0; i < 5; i++) pub('-t', 'plant/line1/speed', '-m', `{"rpm": ${1201 + i}}`);
    await until(page, 'a message rate', () => /\/s$/.test(document.querySelector('.trow[data-topic="plant/line1/speed"] .rate')?.textContent || ''));
    report.age_column = await text(page, '.trow[data-topic="plant/line1/temp"] .age');
    check(/^\d+s$/.test(report.age_column || ''), `no age: ${report.age_column}`);

    // A device: online with since-when, then offline with the reason.
    device = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'press-7', username: 'ops' });
    await new Promise((r) => device.once('connect', r));
    await until(page, 'the device online', () => /online since/.test(document.querySelector('#devices li[data-client="press-7"].on')?.textContent || ''));
    await sleep(3200); // longer than a short-lived client
    await new Promise((r) => device.end(false, {}, r));
    await until(page, 'the device offline with its reason', () => /offline .* · disconnect$/.test(document.querySelector('#devices li[data-client="press-7"].off')?.textContent || ''));
    report.device_offline = await text(page, '#devices li[data-client="press-7"]');
    // Short-lived clients (every mosquitto_pub above) are counted, not listed.
    const listed = await page.evaluate(() => [...document.querySelectorAll('#devices li')].map((li) => li.dataset.client));
    check(listed.length === 1, `short-lived clients listed: ${listed}`);
    report.device_note = await text(page, '#device-note');
    check(/short-lived/.test(report.device_note), report.device_note);

    // The inspector: join, stream, pause, resume, publish (allowed and forbidden).
    await page.fill('#insp-room', 'plant/#');
    await page.click('#insp-join button');
    await until(page, 'the inspector joined', () => document.getElementById('insp-state').textContent === 'in plant/#');
    pub('-t', 'plant/line2/speed', '-m', '{"rpm": 880}');
    await until(page, 'the message in the inspector', () => [...document.querySelectorAll('#stream li')].some((li) => li.textContent.includes('plant/line2/speed{"rpm":880}')));
    await page.click('#insp-pause');
    pub('-t', 'plant/line3/speed', '-m', '{"rpm": 990}');
    await until(page, 'one held message', () => document.getElementById('insp-pause').textContent === 'Resume (1)');
    check(!(await page.evaluate(() => document.getElementById('stream').textContent.includes('990'))), 'paused, yet streamed');
    await page.click('#insp-pause');
    await until(page, 'the held message', () => document.getElementById('stream').textContent.includes('{"rpm":990}'));
    await page.fill('#pub-topic', 'plant/line1/cmd');
    await page.fill('#pub-payload', '{"stop": true}');
    await page.click('#insp-pub button');
    await until(page, 'the publish ack', () => document.getElementById('pub-result').textContent.startsWith('published to plant/line1/cmd'));
    await until(page, 'the published command in the tree', (s) => document.querySelector(s)?.textContent.includes('{"stop":true}'), rowValue('plant/line1/cmd'));
    await page.fill('#pub-topic', 'elsewhere/x');
    await page.click('#insp-pub button');
    await until(page, 'forbidden', () => document.getElementById('pub-result').textContent.startsWith('forbidden'));

    // A broker restart: a banner while it is away, stale values, then recovery.
    await broker.stop('SIGTERM');
    await until(page, 'the lost banner', () => { const b = document.getElementById('banner'); return !b.hidden && b.dataset.kind === 'lost' && b.textContent.includes('restarting'); });
    await until(page, 'values marked stale while away', () => !!document.querySelector('.trow.stale'));
    await broker.start();
    await until(page, 'the recovered banner', () => { const b = document.getElementById('banner'); return !b.hidden && b.dataset.kind === 'back' && b.textContent.includes('history recovered'); }, null, 15000);
    report.recovered_banner = await text(page, '#banner');
    pub('-t', 'plant/line1/speed', '-m', '{"rpm": 1300}');
    await until(page, 'a fresh value after the restart', (s) => document.querySelector(s)?.textContent.includes('{"rpm":1300}'), rowValue('plant/line1/speed'));
    check(await page.evaluate(() => !document.querySelector('.trow[data-topic="plant/line1/speed"]').classList.contains('stale')), 'still stale');
    check((await page.evaluate(() => document.getElementById('status').dataset.state)) === 'connected', 'status not connected');
    await page.close();

    // A phone: nothing wider than the screen, values on one line.
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    await phone.goto(base);
    await until(phone, 'the tree on a phone', (s) => !!document.querySelector(s), rowValue('sensors/hall/env'));
    const fit = await phone.evaluate(() => ({
      width: document.documentElement.scrollWidth,
      devicesRight: document.querySelector('.devices').getBoundingClientRect().right,
      rowHeight: document.querySelector('.trow[data-topic="sensors/hall/env"]').offsetHeight,
      valueHeight: document.querySelector('.trow[data-topic="sensors/hall/env"] .val').scrollHeight,
    }));
    report.phone = fit;
    check(fit.width <= 390 && fit.devicesRight <= 390, `wider than the phone: ${JSON.stringify(fit)}`);
    check(fit.rowHeight === 28 && fit.valueHeight <= 28, `values wrap: ${JSON.stringify(fit)}`);
    await phone.close();

    device = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'press-7', username: 'ops' });
    await new Promise((r) => device.once('connect', r));
    await shoot(browser, 'desktop', { width: 1280, height: 800 }, 'light');
    await shoot(browser, 'desktop', { width: 1280, height: 800 }, 'dark');
    await shoot(browser, 'phone', { width: 390, height: 844 }, 'light');
    await shoot(browser, 'phone', { width: 390, height: 844 }, 'dark');

    // 10 000 retained topics.
    const loader = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'loader' });
    await new Promise((r) => loader.once('connect', r));
    for (let i = 0; i < 10000; i++) loader.publish(`load/${Math.floor(i / 100)}/${i}`, JSON.stringify({ v: i }), { retain: true });
    await loader.publishAsync('load/done', '1', { qos: 1, retain: true });
    loader.end(true);
    const big = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await big.addInitScript(() => {
      window.longTasks = [];
      new PerformanceObserver((list) => { for (const e of list.getEntries()) window.longTasks.push(e.duration); }).observe({ type: 'longtask', buffered: true });
    });
    const loadStart = Date.now();
    await big.goto(base);
    await until(big, '10 000 topics counted', () => Number(document.getElementById('topic-count').textContent.replace(/\D/g, '')) >= 10001, null, 30000);
    report.big_render_ms = Date.now() - loadStart;
    await big.evaluate(() => { const t = document.getElementById('tree'); t.scrollTop = t.scrollHeight; });
    await until(big, 'the last rows after scrolling', (s) => !!document.querySelector(s), '.trow[data-topic="sensors/hall/env"]');
    report.big_dom_rows = await big.evaluate(() => document.querySelectorAll('.trow').length);
    await big.fill('#search', 'load/99/');
    await until(big, 'the search result', () => document.getElementById('topic-count').textContent.startsWith('100 of') && !!document.querySelector('.trow[data-topic="load/99/9900"]'));
    const tasks = await big.evaluate(() => window.longTasks);
    report.long_tasks = { count: tasks.length, max_ms: Math.round(Math.max(0, ...tasks)), total_ms: Math.round(tasks.reduce((a, b) => a + b, 0)) };
    check(report.big_dom_rows < 200, `not virtualised: ${report.big_dom_rows} rows in the DOM`);
    await big.close();
    console.log(JSON.stringify(report));
  } finally {
    if (device) device.end(true);
    await browser.close();
    await broker.stop('SIGKILL');
  }
  process.exit(0);
})();
