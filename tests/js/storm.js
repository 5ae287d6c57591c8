// A reconnect storm: 500 Node clients (switchboard.js over the ws package) joined to a
// room; the broker restarts (SIGTERM: close 1001, then a new process); each client's
// return is timed from the moment the new process serves. Backoff with full jitter
// must spread them over the window instead of one burst.
// Usage: node storm.js BIN CONFIG HTTP_PORT MQTT_PORT LOG CLIENTS
'use strict';
const WebSocket = require('ws');
const { sleep, deadline, Broker, waitFor } = require('./lib/harness');

const [bin, config, http, , log, count] = process.argv.slice(2);
const CLIENTS = Number(count || 500);
deadline(120000);

(async () => {
  const { connect } = await import('../../clients/js/switchboard.js');
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  const clients = [];
  const back = new Map();
  const codes = {};
  let restartedAt = null;
  for (let i = 0; i < CLIENTS; i++) {
    const client = connect(`ws://127.0.0.1:${http}/ws`, { WebSocket });
    client.on('disconnected', (e) => { codes[e.code] = (codes[e.code] || 0) + 1; });
    client.on('joined', (e) => { if (e.resumed && !back.has(i)) back.set(i, Date.now()); });
    client.join('storm/#');
    clients.push(client);
    if (i % 50 === 49) await sleep(20);
  }
  await waitFor('every client joined', () => clients.every((c) => c.rooms.get('storm/#')?.joined), 30000);
  await broker.stop('SIGTERM');
  await broker.start();
  restartedAt = Date.now();
  await waitFor('every client back', () => back.size === CLIENTS, 60000, 50);
  const arrivals = [...back.values()].map((t) => Math.max(0, t - restartedAt)).sort((a, b) => a - b);
  const buckets = {};
  for (const ms of arrivals) { const b = Math.floor(ms / 100) * 100; buckets[b] = (buckets[b] || 0) + 1; }
  for (const c of clients) c.close();
  await broker.stop('SIGKILL');
  const at = (q) => arrivals[Math.min(arrivals.length - 1, Math.floor(q * arrivals.length))];
  console.log(JSON.stringify({ clients: CLIENTS, back: arrivals.length, codes, p10: at(0.1), p50: at(0.5), p90: at(0.9), max: arrivals[arrivals.length - 1], busiest_100ms: Math.max(...Object.values(buckets)), buckets }));
  process.exit(0);
})();
