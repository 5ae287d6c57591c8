// An MQTT 5 client with a will (delay interval given) and a session expiry longer
// than the delay connects, then drops its socket without DISCONNECT.
// Usage: node will_delay.js URL WILL_TOPIC DELAY_SECS. Prints "dropped" when gone.
'use strict';
const mqtt = require('mqtt');
const [url, willTopic, delay] = process.argv.slice(2);
const client = mqtt.connect(url, {
  protocolVersion: 5,
  clientId: `will-delay-${process.pid}`,
  reconnectPeriod: 0,
  properties: { sessionExpiryInterval: 300 },
  will: { topic: willTopic, payload: Buffer.from('delayed will'), qos: 0, retain: false,
          properties: { willDelayInterval: Number(delay) } },
});
client.on('error', (e) => { console.error(`fail: ${e.message}`); process.exit(1); });
client.on('connect', () => {
  client.stream.destroy();
  console.log('dropped');
  process.exit(0);
});
