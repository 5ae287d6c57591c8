// Opens Switchboard's dashboard in headless Chromium, joins a room, and waits until
// the page shows a message published over MQTT by the test.
// Usage: node dashboard.js HTTP_URL ROOM TOPIC EXPECTED_PAYLOAD SCREENSHOT_PNG
// Prints "ready" once joined (the test then publishes), "ok" when the row appears.
'use strict';
const { chromium } = require('playwright-core');

const [url, room, topic, expected, screenshot] = process.argv.slice(2);
const fail = (why) => { console.error(`fail: ${why}`); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'connected');
    await page.fill('#room', room);
    await page.click('button');
    await page.waitForFunction((r) => [...document.querySelectorAll('#log li')].some((li) => li.textContent === `joined ${r}`), room);
    console.log('ready');
    const row = page.locator(`#topics tr[data-key="${topic}"] td.payload`);
    await row.waitFor();
    await page.waitForFunction(([t, want]) => {
      const cell = document.querySelector(`#topics tr[data-key="${t}"] td.payload`);
      return cell && cell.textContent === want;
    }, [topic, expected]);
    if (screenshot) await page.screenshot({ path: screenshot });
    console.log('ok');
  } catch (e) {
    fail(e.message);
  } finally {
    await browser.close();
  }
  process.exit(0);
})();
