import type { Server as HttpServer } from 'node:http';
import type { Server as NetServer } from 'node:net';
import { IngestError } from './errors.js';

/** Bind a listener; a port in use or an address not ours stops start-up with EI_LISTEN_FAILED naming it. */
export function listen(
  server: NetServer | HttpServer,
  host: string,
  port: number,
  what: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new IngestError(
          'EI_LISTEN_FAILED',
          `${what} listener cannot bind ${host}:${port}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}
