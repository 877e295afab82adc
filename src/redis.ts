import { Redis } from 'ioredis';
import type { Component, NodeContext } from './component.js';
import { retryPolicy } from './retry.js';

/**
 * The one Redis client of a node (alert delivery, session logins, the caches),
 * answering the /ready check "redis". It never blocks ingestion: commands fail
 * fast while Redis is down, and the client reconnects by itself.
 */
export class RedisPart implements Component {
  readonly name = 'redis';
  client: Redis | null = null;

  constructor(private readonly ctx: NodeContext) {}

  get check(): string | undefined {
    return this.ctx.cfg.redis.url ? 'redis' : undefined;
  }

  async start(): Promise<void> {
    const { cfg, log } = this.ctx;
    if (!cfg.redis.url) return;
    const reconnect = retryPolicy('redisReconnect');
    const client = new Redis(cfg.redis.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // a server that accepts but never answers (frozen, half-open TCP) must fail commands, not hang them
      commandTimeout: 5000,
      retryStrategy: (times) => reconnect.delayMs(times),
    });
    this.client = client;
    // one line per transition, not per reconnect attempt
    let up: boolean | null = null;
    client.on('ready', () => {
      if (up === false) log.info('Redis reachable again');
      up = true;
    });
    client.on('error', (err) => {
      if (up !== false) log.warn({ err: err.message }, 'Redis unreachable; retrying in the background');
      up = false;
    });
    const connected = client.connect().catch(() => {}); // reported by the 'error' handler above
    // give a healthy Redis its moment before the broker opens (session logins, first cache write);
    // a dead one costs one second at start, then the client keeps retrying in the background
    await Promise.race([connected, new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  async probe(): Promise<void> {
    if (this.client) await this.client.ping();
  }

  async stop(): Promise<void> {
    const client = this.client;
    if (client) await client.quit().catch(() => client.disconnect());
  }
}
