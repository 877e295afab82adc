import { connect as netConnect } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

export interface RawResult {
  packets: Packet[];
  closed: boolean;
  closedAfterMs: number;
}

/**
 * Speak MQTT byte by byte (mqtt-packet), to send what well-behaved clients
 * refuse to send and to see exactly what the broker answers and when it hangs up.
 */
export function rawSession(port: number, send: Array<Packet | Buffer>, waitMs = 700): Promise<RawResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = netConnect(port, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const packets: Packet[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ packets, closed, closedAfterMs: Date.now() - started });
    };
    parser.on('packet', (p) => packets.push(p));
    socket.on('data', (d) => parser.parse(d));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    for (const p of send) socket.write(Buffer.isBuffer(p) ? p : mqttPacket.generate(p));
    const timer = setTimeout(() => finish(false), waitMs);
  });
}

export const connectPacket = (clientId: string, extra: Partial<mqttPacket.IConnectPacket> = {}): Packet => ({
  cmd: 'connect',
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean: true,
  clientId,
  keepalive: 30,
  ...extra,
});
