// Password guessers, run as their own process by tests/e2e/login-abuse.test.ts
// (so their load does not distort the test process's own latency measurements).
//   node guessers.mjs HTTP_PORT MQTT_PORT SECONDS HTTP_GUESSERS MQTT_GUESSERS USER[,USER...] [PER_SECOND]
// Each guesser tries again as soon as it has its answer, at most PER_SECOND
// times a second (default: unpaced). Prints one JSON line: answers by kind
// (HTTP status, CONNACK return code). With GUESS_CONTROL=1 the same traffic
// asks for nothing that needs a login (/health; CONNECT without a user name):
// what the requests themselves cost, to compare the guesses with.
import { connect } from 'node:net';
import mqttPacket from 'mqtt-packet';

const [httpPort, mqttPort, seconds, httpN, mqttN] = process.argv.slice(2, 7).map(Number);
const users = process.argv[7].split(',');
const gapMs = Number(process.argv[8]) > 0 ? 1000 / Number(process.argv[8]) : 0;
const control = process.env.GUESS_CONTROL === '1';
const pace = async (t0) => {
  const wait = t0 + gapMs - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
};
const deadline = Date.now() + seconds * 1000;
const http = {};
const mqtt = {};
let retryAfter = 0;
let n = 0;

const count = (o, k) => {
  o[k] = (o[k] ?? 0) + 1;
};

async function httpGuesser(i) {
  while (Date.now() < deadline) {
    const t0 = Date.now();
    const user = users[(i + n) % users.length];
    const auth = Buffer.from(`${user}:guess-${i}-${n++}`).toString('base64');
    try {
      const res = await fetch(`http://127.0.0.1:${httpPort}${control ? '/health' : '/api/status'}`, {
        headers: control ? {} : { authorization: `Basic ${auth}` },
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      count(http, res.status);
      if (res.status === 429 && Number(res.headers.get('retry-after')) > 0) retryAfter++;
    } catch {
      count(http, 'error');
    }
    await pace(t0);
  }
}

function connackOnce(user, password) {
  return new Promise((resolve) => {
    const s = connect(mqttPort, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const done = (code) => {
      clearTimeout(timer);
      s.destroy();
      resolve(code);
    };
    const timer = setTimeout(() => done('timeout'), 10_000);
    parser.on('packet', (p) => done(p.cmd === 'connack' ? p.returnCode : p.cmd));
    s.on('data', (d) => parser.parse(d));
    s.on('error', () => done('error'));
    s.on('close', () => done('closed'));
    s.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: '',
        keepalive: 30,
        ...(control ? {} : { username: user, password: Buffer.from(password) }),
      }),
    );
  });
}

async function mqttGuesser(i) {
  while (Date.now() < deadline) {
    const t0 = Date.now();
    const user = users[(i + n) % users.length];
    count(mqtt, await connackOnce(user, `guess-${i}-${n++}`));
    await pace(t0);
  }
}

await Promise.all([
  ...Array.from({ length: httpN }, (_, i) => httpGuesser(i)),
  ...Array.from({ length: mqttN }, (_, i) => mqttGuesser(i)),
]);
console.log(JSON.stringify({ http, mqtt, retryAfter }));
