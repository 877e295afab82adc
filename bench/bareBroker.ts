import { createServer } from 'node:net';
import { Aedes } from 'aedes';

// Baseline: a bare Aedes broker with no hooks and no pipeline. Prints the
// number of client publishes it has handled, every 10 ms, on stdout.
const port = Number(process.argv[2] ?? 0);
const broker = await Aedes.createBroker();
let count = 0;
broker.on('publish', (_packet, client) => {
  if (client) count++;
});
const server = createServer((socket) => broker.handle(socket));
server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`port ${typeof addr === 'object' && addr ? addr.port : port}\n`);
});
setInterval(() => process.stdout.write(`count ${count}\n`), 10);
process.on('SIGTERM', () => {
  server.close();
  broker.close(() => process.exit(0));
});
