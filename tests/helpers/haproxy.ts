import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, freePort, tempDir } from './services.js';

export const HAPROXY = '/usr/sbin/haproxy';
export const SHIPPED_CFG = join(import.meta.dirname, '..', '..', 'deploy', 'haproxy.cfg');

export interface NodeAddress {
  readonly mqttPort: number;
  readonly httpPort: number;
}

export interface Balancer {
  readonly child: ChildProcess;
  readonly mqttPort: number;
  readonly httpPort: number;
  readonly config: string;
  output(): string;
  stop(): Promise<void>;
}

/**
 * The shipped deploy/haproxy.cfg with its listeners on free loopback ports and
 * its nodeN servers pointed at the given nodes; checks every `interMs` so a
 * test sees a dead node marked down quickly. Everything else is the file as shipped.
 */
export function balancerConfig(
  nodes: readonly NodeAddress[],
  ports: { mqttPort: number; httpPort: number },
  interMs = 300,
): string {
  let cfg = readFileSync(SHIPPED_CFG, 'utf8');
  cfg = cfg.replace(/^(\s*)bind :1883$/m, `$1bind 127.0.0.1:${ports.mqttPort}`);
  cfg = cfg.replace(/^(\s*)bind :8080$/m, `$1bind 127.0.0.1:${ports.httpPort}`);
  cfg = cfg.replace(/inter 2s/g, `inter ${interMs}ms`);
  // the shipped maxconn needs a file-descriptor limit a test runner does not have
  cfg = cfg.replace(/^(\s*)maxconn \d+$/m, '$1maxconn 4096');
  // the shipped file's resolvers section is Docker's DNS; servers given by IP never use it
  cfg = cfg.replace(/^(\s*)server node(\d) node\d:1883 check port 8080$/gm, (_m, sp: string, n: string) => {
    const node = nodes[Number(n) - 1];
    return node ? `${sp}server node${n} 127.0.0.1:${node.mqttPort} check port ${node.httpPort}` : '';
  });
  cfg = cfg.replace(/^(\s*)server node(\d) node\d:8080 check$/gm, (_m, sp: string, n: string) => {
    const node = nodes[Number(n) - 1];
    return node ? `${sp}server node${n} 127.0.0.1:${node.httpPort} check` : '';
  });
  if (/node\d:/.test(cfg)) throw new Error('haproxy.cfg: a server line was not substituted');
  return cfg;
}

/** A real HAProxy (foreground, -db) in front of the nodes; stop() kills it by its pid. */
export async function startBalancer(nodes: readonly NodeAddress[]): Promise<Balancer> {
  const ports = { mqttPort: await freePort(), httpPort: await freePort() };
  const dir = tempDir('haproxy');
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(config, balancerConfig(nodes, ports));
  const child = spawn(HAPROXY, ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited: ${out}`);
      const res = await fetch(`http://127.0.0.1:${ports.httpPort}/health`).catch(() => null);
      return res?.ok === true;
    },
    20_000,
    'haproxy forwarding to a node',
  );
  return {
    child,
    ...ports,
    config,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
