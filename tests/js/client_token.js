// switchboard.js in headless Chromium with 3-second tokens from getToken(): the
// client refreshes each before it expires (an `auth` frame on the open connection),
// so 150 messages published across two expiries all arrive, once, without a drop.
// Usage: node client_token.js BIN CONFIG HTTP_PORT MQTT_PORT LOG json|msgpack
'use strict';
const { execFileSync } = require('child_process');
const mqtt = require('mqtt');
const { sleep, fail, deadline, launchBrowser, Broker } = require('./lib/harness');

const [bin, config, http, mqttPort, log, protocol] = process.argv.slice(2);
const TOTAL = 150;
deadline(60000);

(async () => {
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => fail(`page error: ${e.message}`));
    let minted = 0;
    await page.exposeFunction('mintToken', () => {
      minted += 1;
      return execFileSync(bin, ['--config', config, 'token', '--sub', 'alice', '--room', 'count/#', '--ttl', '3']).toString().trim();
    });
    await page.goto(`http://127.0.0.1:${http}/client.js`);
    await page.evaluate(async (protocol) => {
      const { connect } = await import('/client.js');
      const T = { seen: [], events: [], refreshed: 0, user: null };
      window.T = T;
      const client = connect(`ws://${location.host}/ws`, { protocol, getToken: () => window.mintToken(), refreshBefore: 1000 });
      client.on('connected', (e) => { T.user = e.user; T.events.push('connected'); });
      client.on('disconnected', (e) => T.events.push(`disconnected ${e.code}`));
      client.on('token', () => { T.refreshed += 1; });
      client.on('error', (e) => T.events.push(`error ${e.code}`));
      await client.join('count/#', { onMessage: (m) => T.seen.push(m.payload) }).ready;
    }, protocol);
    const publisher = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'pub-token' });
    await new Promise((r) => publisher.once('connect', r));
    for (let i = 1; i <= TOTAL; i++) {
      await publisher.publishAsync('count/seq', String(i), { qos: 1 });
      await sleep(45);
    }
    publisher.end(true);
    await page.waitForFunction((n) => window.T.seen.length >= n, TOTAL, { timeout: 10000 }).catch(() => {});
    await sleep(300);
    const T = await page.evaluate(() => window.T);
    console.log(JSON.stringify({ ...T, minted }));
  } finally {
    await browser.close();
    await broker.stop('SIGKILL');
  }
  process.exit(0);
})();
