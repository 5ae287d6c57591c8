// MQTT 5 delivery rules checked with MQTT.js against a running broker. Each check
// prints one JSON line {"check": NAME, ...observed}; the Rust test asserts on them.
// Usage: node v5_rules.js MQTT_URL
'use strict';
const mqtt = require('mqtt');

const url = process.argv[2];
const run = `${process.pid}`;
const fail = (why) => { console.error(`fail: ${why}`); process.exit(1); };
setTimeout(() => fail('timed out'), 40000).unref();

const connect = (clientId, extra = {}) => new Promise((resolve, reject) => {
  const client = mqtt.connect(url, { protocolVersion: 5, clientId, reconnectPeriod: 0, connectTimeout: 5000, ...extra });
  client.once('connect', (connack) => resolve([client, connack]));
  client.once('error', reject);
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const subscribe = (client, filter, opts) => new Promise((resolve, reject) =>
  client.subscribe(filter, opts, (err, granted) => (err ? reject(err) : resolve(granted))));
const publish = (client, topic, payload, opts) => new Promise((resolve, reject) =>
  client.publish(topic, payload, opts, (err, packet) => (err ? reject(err) : resolve(packet))));
// Messages `client` receives within `ms`, as plain objects.
const collect = (client, ms) => new Promise((resolve) => {
  const got = [];
  const on = (topic, payload, packet) => got.push({
    topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain,
    ids: (packet.properties && packet.properties.subscriptionIdentifier) || null,
    expiry: (packet.properties && packet.properties.messageExpiryInterval) || null,
    user: (packet.properties && packet.properties.userProperties) || null,
  });
  client.on('message', on);
  setTimeout(() => { client.removeListener('message', on); resolve(got); }, ms);
});
const report = (check, value) => console.log(JSON.stringify({ check, ...value }));

(async () => {
  const [a, connack] = await connect(`v5a-${run}`);
  report('connack', { receiveMaximum: connack.properties && connack.properties.receiveMaximum,
    subIdsAvailable: connack.properties && connack.properties.subscriptionIdentifiersAvailable });
  const [b] = await connect(`v5b-${run}`);

  // QoS = min(publish, granted); overlapping subscriptions: one copy, every identifier.
  await subscribe(a, `q/${run}/+`, { qos: 0, properties: { subscriptionIdentifier: 7 } });
  await subscribe(a, `q/${run}/#`, { qos: 0, properties: { subscriptionIdentifier: 9 } });
  let got = collect(a, 500);
  await publish(b, `q/${run}/x`, 'min', { qos: 1, properties: { userProperties: { k: 'v' } } });
  report('qos_min_and_ids', { got: await got });

  // No Local: the publisher's own subscription does not get its message.
  await subscribe(b, `nl/${run}`, { qos: 1, nl: true });
  await subscribe(a, `nl/${run}`, { qos: 1 });
  const gotB = collect(b, 500);
  got = collect(a, 500);
  await publish(b, `nl/${run}`, 'mine', { qos: 1 });
  report('no_local', { publisher: await gotB, other: await got });

  // Retain As Published on live delivery.
  await subscribe(a, `rap/${run}/1`, { qos: 0, rap: true });
  await subscribe(a, `rap/${run}/0`, { qos: 0, rap: false });
  got = collect(a, 500);
  await publish(b, `rap/${run}/1`, 'kept', { qos: 0, retain: true });
  await publish(b, `rap/${run}/0`, 'cleared', { qos: 0, retain: true });
  report('retain_as_published', { got: await got });

  // Retain Handling: 0 every subscribe, 1 only new, 2 never.
  await publish(b, `rh/${run}`, 'state', { qos: 1, retain: true });
  const [c] = await connect(`v5c-${run}`);
  got = collect(c, 1500);
  await subscribe(c, `rh/${run}`, { qos: 1, rh: 2 });
  await subscribe(c, `rh/${run}`, { qos: 1, rh: 1 }); // exists already: nothing
  await sleep(200);
  await subscribe(c, `+/${run}`, { qos: 1, rh: 1 }); // new: the retained message
  report('retain_handling', { got: await got });

  // Message Expiry: forwarded as the time left; an expired retained message is gone.
  await subscribe(a, `exp/${run}/live`, { qos: 1 });
  got = collect(a, 500);
  await publish(b, `exp/${run}/live`, 'soon', { qos: 1, properties: { messageExpiryInterval: 60 } });
  await publish(b, `exp/${run}/gone`, 'old', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } });
  report('expiry_forwarded', { got: await got });
  await sleep(2100);
  const [d] = await connect(`v5d-${run}`);
  got = collect(d, 700);
  await subscribe(d, `exp/${run}/gone`, { qos: 1 });
  report('expired_retained', { got: await got });

  for (const client of [a, b, c, d]) client.end(true);
  process.exit(0);
})().catch((e) => fail(e && e.message));
