// One MQTT.js client subscribes and publishes to itself over the given URL, then
// checks the message came back. Usage: node roundtrip.js URL PROTOCOL_VERSION [CA_FILE]
// Prints "ok <topic> <payload>" and exits 0, or prints the error and exits 1.
'use strict';
const fs = require('fs');
const mqtt = require('mqtt');

const [url, version, caFile] = process.argv.slice(2);
const protocolVersion = Number(version);
const topic = `e2e/js/${protocolVersion}/${process.pid}`;
const payload = `hello from MQTT.js v${protocolVersion}`;
const options = { protocolVersion, connectTimeout: 5000, reconnectPeriod: 0, clean: true };
if (caFile) options.ca = fs.readFileSync(caFile);

let done = false;
const fail = (why) => { if (done) return; console.error(`fail: ${why}`); process.exit(1); };
setTimeout(() => fail('timed out'), 10000).unref();

const client = mqtt.connect(url, options);
client.on('error', (e) => fail(e.message));
client.on('connect', () => {
  client.subscribe(topic, { qos: 1 }, (err) => {
    if (err) return fail(err.message);
    client.publish(topic, payload, { qos: 1 });
  });
});
client.on('message', (t, p) => {
  if (t !== topic || p.toString() !== payload) return fail(`unexpected ${t} ${p}`);
  done = true;
  console.log(`ok ${t} ${p}`);
  client.end(false, () => process.exit(0));
});
