// switchboard.js (Node, ws) at the edges the server signals:
//   a static token the server refuses (4001) → the client stops and says why, no retry loop;
//   getToken() that first hands out a bad token → it retries with a fresh one and gets in;
//   a broker that stops answering (SIGSTOP) → dead-connection detection within two
//   heartbeats (close 4000 locally), and it comes back once the broker does (SIGCONT).
// Usage: node client_edges.js BIN CONFIG HTTP_PORT MQTT_PORT LOG
'use strict';
const { execFileSync } = require('child_process');
const WebSocket = require('ws');
const { sleep, deadline, Broker, waitFor } = require('./lib/harness');

const [bin, config, http, , log] = process.argv.slice(2);
deadline(60000);
const url = `ws://127.0.0.1:${http}/ws`;
const mint = (ttl = 60) => execFileSync(bin, ['--config', config, 'token', '--sub', 'ann', '--room', 'edge/#', '--ttl', String(ttl)]).toString().trim();

(async () => {
  const { connect } = await import('../../clients/js/switchboard.js');
  const broker = new Broker(bin, config, Number(http), log);
  await broker.start();
  const report = {};

  const refused = connect(url, { WebSocket, token: 'not-a-token' });
  const errors = [];
  let attempts = 0;
  refused.on('error', (e) => errors.push(e.code));
  refused.on('recovering', () => { attempts += 1; });
  await waitFor('the refusal', () => errors.includes('unauthorized'), 10000);
  await sleep(2000);
  report.static_bad_token = { errors, retries: attempts, state: refused.state };

  let calls = 0;
  const fresh = connect(url, { WebSocket, getToken: () => { calls += 1; return calls === 1 ? mint(-10) : mint(); } });
  let user = null;
  fresh.on('connected', (e) => { user = e.user; });
  await waitFor('getting in with a fresh token', () => user !== null, 15000);
  report.get_token = { user, calls };
  fresh.close();

  const live = connect(url, { WebSocket, token: mint() });
  const drops = [];
  let connected = 0;
  live.on('connected', () => { connected += 1; });
  live.on('disconnected', (e) => drops.push({ code: e.code, at: Date.now() }));
  live.join('edge/#');
  await waitFor('connected', () => connected === 1, 10000);
  const stoppedAt = Date.now();
  process.kill(broker.child.pid, 'SIGSTOP');
  await waitFor('the dead connection noticed', () => drops.length > 0, 10000);
  report.dead_after_ms = drops[0].at - stoppedAt;
  report.dead_code = drops[0].code;
  process.kill(broker.child.pid, 'SIGCONT');
  await waitFor('back after the broker is', () => connected === 2, 20000);
  report.reconnected = true;
  live.close();
  refused.close();
  await broker.stop('SIGKILL');
  console.log(JSON.stringify(report));
  process.exit(0);
})();
