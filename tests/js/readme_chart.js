// The README's ten-line live chart, as a page served by python3's http.server: after
// two publishes the canvas has a line on it (pixels drawn).
// Usage: node readme_chart.js BIN CONFIG HTTP_PORT MQTT_PORT LOG PAGE_DIR STATIC_PORT
'use strict';
const { execFileSync } = require('child_process');
const { sleep, fail, deadline, launchBrowser, waitFor, Broker, staticServer } = require('./lib/harness');

const [bin, config, http, mqttPort, log, dir, staticPort] = process.argv.slice(2);
deadline(45000);

(async () => {
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  await staticServer(dir, staticPort);
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => fail(`page error: ${e.message}`));
    execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-t', 'sensors/a/temp', '-m', '21.5', '-r']);
    await page.goto(`http://127.0.0.1:${staticPort}/chart.html`);
    await sleep(800);
    execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-t', 'sensors/b/temp', '-m', '{"c": 30}']);
    const drawn = () => page.evaluate(() => {
      const c = document.getElementById('c');
      const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
      return n;
    });
    await waitFor('a line on the canvas', async () => (await drawn()) > 20, 10000, 100);
    console.log(JSON.stringify({ drawn_pixels: await drawn() }));
  } finally {
    await browser.close();
    await broker.stop('SIGKILL');
  }
  process.exit(0);
})();
