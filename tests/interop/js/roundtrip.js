// MQTT.js peer of crates/broker/tests/ws_interop.rs: connects to URL (ws:// or wss://),
// subscribes to a topic, publishes to it and waits for its own message.
// Prints `OK <payload>` and exits 0; prints `ERROR <why>` and exits 1 otherwise.
//
// usage: node roundtrip.js URL [--ca FILE] [--cert FILE --key FILE] [--protocol-version 4|5] [--topic T]
'use strict';
const fs = require('fs');
const mqtt = require('mqtt');

const args = process.argv.slice(2);
const url = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const topic = opt('--topic', 'js/roundtrip');
const options = {
  protocolVersion: Number(opt('--protocol-version', '5')),
  clientId: `mqttjs-${process.pid}`,
  reconnectPeriod: 0,
  connectTimeout: 5000,
};
const ca = opt('--ca');
if (ca) {
  options.ca = fs.readFileSync(ca);
  options.rejectUnauthorized = true;
}
const cert = opt('--cert');
if (cert) {
  options.cert = fs.readFileSync(cert);
  options.key = fs.readFileSync(opt('--key'));
}

let done = false;
const fail = (why) => {
  // Once the message is back, a late socket error while closing changes nothing.
  if (done) return;
  console.log(`ERROR ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timeout'), 10000);

const client = mqtt.connect(url, options);
client.on('error', (e) => fail(e.message));
client.on('connect', () => {
  client.subscribe(topic, { qos: 1 }, (err, granted) => {
    if (err || !granted.length || granted[0].qos >= 128) {
      fail(`subscribe refused: ${err ? err.message : JSON.stringify(granted)}`);
    }
    client.publish(topic, 'hello from mqtt.js', { qos: 1 });
  });
});
client.on('message', (t, payload) => {
  if (done) return;
  done = true;
  console.log(`OK ${payload.toString()}`);
  client.end(false, () => process.exit(0));
});
