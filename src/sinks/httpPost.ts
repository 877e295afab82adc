import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

// One POST of a batch body, over node:http with kept-alive connections.
// Not fetch: undici turns the body into a web stream and copies it twice
// (TextEncoder, then cloneAsUint8Array) and allocates a Response with its own
// streams per write — measured at ~3 µs per reading at 5,000 points per batch
// (bench/README.md, "Where a reading's CPU goes"). Here the body is the one
// Buffer the writer built, handed to the socket as is.

export interface PostAnswer {
  readonly status: number;
  /** at most MAX_TEXT characters of the answer (an error's text; a 204 has none) */
  readonly text: string;
  readonly retryAfter: string | null;
}

/** An error body longer than this is cut: only its start is logged or dead-lettered. */
const MAX_TEXT = 64 * 1024;

const agents = {
  'http:': new HttpAgent({ keepAlive: true, maxSockets: 16 }),
  'https:': new HttpsAgent({ keepAlive: true, maxSockets: 16 }),
};

/**
 * Rejects on a network failure or when no answer came within timeoutMs, with
 * an error whose `code` says which (ECONNREFUSED, EMFILE, ETIMEDOUT…); any
 * HTTP status resolves.
 */
export function post(
  url: URL,
  headers: Readonly<Record<string, string>>,
  body: Buffer,
  timeoutMs: number,
): Promise<PostAnswer> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === 'https:';
    const req = (secure ? httpsRequest : httpRequest)(url, {
      method: 'POST',
      agent: agents[secure ? 'https:' : 'http:'],
      headers: { ...headers, 'content-length': String(body.length) },
    });
    const timer = setTimeout(() => {
      const err = Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' });
      req.destroy(err);
    }, timeoutMs);
    req.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.once('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (c: Buffer) => {
        if (kept < MAX_TEXT) {
          chunks.push(c);
          kept += c.length;
        }
      });
      res.once('end', () => {
        clearTimeout(timer);
        const retryAfter = res.headers['retry-after'];
        resolve({
          status: res.statusCode ?? 0,
          text: Buffer.concat(chunks).toString('utf8').slice(0, MAX_TEXT),
          retryAfter: typeof retryAfter === 'string' ? retryAfter : null,
        });
      });
      res.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    req.end(body);
  });
}
