// switchboard.js in headless Chromium through a broker restart while 200 messages
// are published (MQTT.js, QoS 1, retrying until acknowledged).
//   graceful: SIGTERM mid-way; history survives → the page gets all 200 exactly once
//             and its re-join says recovered: true.
//   crash:    kill -9 mid-way; history is lost → recovered: false, the page redraws
//             from `state` (retained values survive in sled) and ends with all 200.
// Usage: node client_restart.js BIN CONFIG HTTP_PORT MQTT_PORT LOG graceful|crash json|msgpack
// Prints one JSON line of what the page saw; exits non-zero on a failed expectation.
'use strict';
const mqtt = require('mqtt');
const { sleep, fail, deadline, launchBrowser, waitFor, Broker } = require('./lib/harness');

const [bin, config, http, mqttPort, log, mode, protocol] = process.argv.slice(2);
const TOTAL = 200;
deadline(90000);

async function publishAll(client, from, to, retain) {
  for (let i = from; i <= to; i++) {
    const topic = retain ? `count/${i}` : 'count/seq';
    for (;;) {
      try {
        await Promise.race([
          client.publishAsync(topic, String(i), { qos: 1, retain }),
          sleep(3000).then(() => { throw new Error('no PUBACK'); }),
        ]);
        break;
      } catch { await sleep(50); }
    }
    await sleep(10);
  }
}

(async () => {
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => fail(`page error: ${e.message}`));
    await page.goto(`http://127.0.0.1:${http}/client.js`);
    await page.evaluate(async (protocol) => {
      const { connect } = await import('/client.js');
      const T = { seen: [], view: {}, states: [], joins: [], events: [] };
      window.T = T;
      const client = connect(`ws://${location.host}/ws`, { protocol, minReconnectDelay: 200, maxReconnectDelay: 2000 });
      client.on('joined', (e) => T.joins.push(e));
      client.on('disconnected', (e) => T.events.push(`disconnected ${e.code}`));
      client.on('connected', (e) => T.events.push(e.recovering ? 'reconnected' : 'connected'));
      const room = client.join('count/#', {
        onState: (state, info) => {
          T.states.push({ items: state.length, ...info });
          T.view = Object.fromEntries(state.map((s) => [s.topic, s.payload]));
        },
        onMessage: (m) => { T.seen.push(m.payload); T.view[m.topic] = m.payload; },
      });
      await room.ready;
    }, protocol);

    const publisher = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: `pub-${mode}`, reconnectPeriod: 100, connectTimeout: 2000 });
    publisher.on('error', () => {});
    await new Promise((r) => publisher.once('connect', r));
    const retain = mode === 'crash';
    if (mode === 'graceful') {
      const publishing = publishAll(publisher, 1, TOTAL, false);
      await waitFor('60 messages on the page', () => page.evaluate(() => window.T.seen.length >= 60));
      await broker.stop('SIGTERM');
      await broker.start();
      await publishing;
    } else {
      await publishAll(publisher, 1, TOTAL / 2, true);
      await sleep(500); // past [store] flush_ms: the retained values are on disk
      await broker.stop('SIGKILL');
      await broker.start();
      await publishAll(publisher, TOTAL / 2 + 1, TOTAL, true);
    }
    publisher.end(true);
    const want = retain ? () => Object.keys(window.T.view).length >= 200 : () => window.T.seen.length >= 200;
    await page.waitForFunction(want, null, { timeout: 20000 }).catch(() => {});
    await sleep(300); // a duplicate would arrive now
    const T = await page.evaluate(() => window.T);
    console.log(JSON.stringify({ seen: T.seen, view: T.view, states: T.states, joins: T.joins, events: T.events }));
  } finally {
    await browser.close();
    await broker.stop('SIGKILL');
  }
  process.exit(0);
})();
