// Closes /ws connections from real clients and reports whether each close was clean:
// Node's `ws` and headless Chromium, with codes 1000 and 4001.
// Usage: node clean_close.js HTTP_PORT
// Prints one JSON line per case: {"client","sent","code","clean"}.
'use strict';
const WebSocket = require('ws');
const { chromium } = require('playwright-core');

const port = process.argv[2];
const url = `ws://127.0.0.1:${port}/ws`;
const fail = (why) => { console.error(`fail: ${why}`); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

function nodeClose(code) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'switchboard.v1.json');
    ws.on('message', () => ws.close(code, 'done'));
    ws.on('error', reject);
    // `ws` reports 1006 when the server dropped the socket without a close frame.
    ws.on('close', (got) => resolve({ client: 'node-ws', sent: code, code: got, clean: got === code }));
  });
}

(async () => {
  for (const code of [1000, 4001]) console.log(JSON.stringify(await nodeClose(code)));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    // A page of the broker's own origin (Chromium blocks pages the harness made up).
    await page.goto(`http://127.0.0.1:${port}/healthz`);
    for (const code of [1000, 4001]) {
      const result = await page.evaluate(([u, c]) => new Promise((resolve) => {
        const ws = new WebSocket(u, 'switchboard.v1.json');
        ws.onmessage = () => ws.close(c, 'done');
        ws.onclose = (e) => resolve({ code: e.code, clean: e.wasClean });
      }), [url, code]);
      console.log(JSON.stringify({ client: 'chromium', sent: code, ...result }));
    }
  } catch (e) {
    fail(e.message);
  } finally {
    await browser.close();
  }
  process.exit(0);
})();
