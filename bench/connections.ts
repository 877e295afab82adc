import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';

// Load generator for the many-connections row: N raw MQTT connections, each
// publishing one QoS 0 reading per second (staggered over the second), from
// several loopback source addresses. Run under `prlimit --nofile=65536:65536`.
// Prints on stdout: `connected N refused M`, `mid SENT` halfway through the
// traffic, `done SENT` at the end; then closes every socket and exits.
//   node connections.js PORT COUNT SECONDS [SOURCES]

const [port, count, seconds, sources] = process.argv.slice(2).map(Number) as [number, number, number, number];
const nSources = sources || 8;
const sockets: Socket[] = [];
let refused = 0;

function open(i: number): Promise<Socket | null> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % nSources)}` });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let settled = false;
    const settle = (s: Socket | null) => {
      if (settled) return;
      settled = true;
      resolve(s);
    };
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') settle(p.returnCode === 0 ? socket : null);
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => settle(null));
    socket.on('close', () => settle(null));
    socket.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: `conn-${process.pid}-${i}`,
        keepalive: 120,
      }),
    );
  });
}

let next = 0;
await Promise.all(
  Array.from({ length: 100 }, async () => {
    while (next < count) {
      const i = next++;
      const s = await open(i);
      if (s) sockets.push(s);
      else refused++;
    }
  }),
);
process.stdout.write(`connected ${sockets.length} refused ${refused}\n`);

// connection i publishes at offset (i mod 100) × 10 ms of every second
const packets = sockets.map((_s, i) =>
  mqttPacket.generate({
    cmd: 'publish',
    topic: `sensors/building_${String((i % 100) + 1).padStart(3, '0')}/${i % 10}/room_${i}/temperature`,
    payload: Buffer.from('21.5'),
    qos: 0,
    retain: false,
    dup: false,
  }),
);
let sent = 0;
let slot = 0;
const ticks = seconds * 100;
await new Promise<void>((resolve) => {
  const timer = setInterval(() => {
    for (let i = slot % 100; i < sockets.length; i += 100) {
      if (!sockets[i]!.destroyed) {
        sockets[i]!.write(packets[i]!);
        sent++;
      }
    }
    slot++;
    if (slot === ticks >> 1) process.stdout.write(`mid ${sent}\n`);
    if (slot >= ticks) {
      clearInterval(timer);
      resolve();
    }
  }, 10);
});
process.stdout.write(`done ${sent}\n`);
for (const s of sockets) s.destroy();
process.exit(0);
