// What the client and dashboard tests share: headless Chromium (Debian's, driven by
// playwright-core), a Switchboard process they can kill and restart, and small waits.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const { chromium } = require('playwright-core');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Processes this script started: killed when it exits, however it exits.
const started = new Set();
process.on('exit', () => { for (const child of started) try { child.kill('SIGKILL'); } catch { /* gone */ } });

function fail(why) {
  console.error(`fail: ${why}`);
  process.exit(1);
}

/** Fails the script after `ms` (every script is bounded in time). */
function deadline(ms) {
  setTimeout(() => fail(`timed out after ${ms} ms`), ms).unref();
}

async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function waitFor(what, test, ms = 10000, every = 25) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await test()) return;
    await sleep(every);
  }
  fail(`waited ${ms} ms for ${what}`);
}

/** A Switchboard process of the test's binary and config, restartable on the same ports. */
class Broker {
  constructor(bin, config, httpPort, log) {
    Object.assign(this, { bin, config, httpPort, log, child: null });
  }

  async start() {
    const out = fs.openSync(this.log, 'a');
    this.child = spawn(this.bin, ['--config', this.config], { stdio: ['ignore', out, out], env: { ...process.env, NO_COLOR: '1' } });
    fs.closeSync(out);
    const child = this.child;
    started.add(child);
    child.once('exit', () => started.delete(child));
    await waitFor('the broker to serve HTTP', () => portOpen(this.httpPort), 20000);
  }

  /** SIGTERM (a graceful stop: history saved) or SIGKILL (a crash). */
  async stop(signal = 'SIGTERM') {
    const child = this.child;
    if (!child) return;
    this.child = null;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await Promise.race([exited, sleep(10000)]);
    await waitFor('the port to close', async () => !(await portOpen(this.httpPort)), 5000);
  }
}

/** python3's http.server over `dir` on 127.0.0.1:`port` (as examples/run serves pages). */
async function staticServer(dir, port) {
  const server = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir], { stdio: 'ignore' });
  started.add(server);
  server.once('exit', () => started.delete(server));
  await waitFor('the static server', () => portOpen(Number(port)), 10000);
  return server;
}

process.on('unhandledRejection', (e) => fail(e && e.stack ? e.stack : String(e)));

module.exports = { sleep, fail, deadline, launchBrowser, waitFor, Broker, staticServer };
