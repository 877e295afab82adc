import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');
const exec = promisify(execFile);
const compose = (...args: string[]) =>
  exec('docker-compose', ['-f', 'docker-compose.yml', '--env-file', '.env.example', ...args], {
    cwd: ROOT,
    timeout: 60_000,
  });

describe('docker files (no Docker engine here: validated offline)', () => {
  it('docker-compose.yml is valid (docker-compose config -q)', async () => {
    await expect(compose('config', '-q')).resolves.toBeDefined();
  });

  it('the stack matches the system guide and wires energy-ingest through env vars', async () => {
    const cfg = parse((await compose('config')).stdout) as {
      services: Record<
        string,
        {
          ports?: Array<{ published: number | string }>;
          environment?: Record<string, string>;
          depends_on?: Record<string, { condition: string }>;
          healthcheck?: unknown;
          command?: string[];
        }
      >;
    };
    const s = cfg.services;
    const published = (name: string) => s[name]!.ports!.map((p) => Number(p.published));
    expect(published('postgres')).toEqual([5432]);
    expect(published('influxdb')).toEqual([8086]);
    expect(published('redis')).toEqual([6379]);
    expect(published('pgadmin')).toEqual([5050]);
    expect(s.postgres!.environment).toMatchObject({
      POSTGRES_DB: 'energy_management',
      POSTGRES_USER: 'energy_user',
    });
    expect(s.influxdb!.environment).toMatchObject({
      DOCKER_INFLUXDB_INIT_ORG: 'energy_org',
      DOCKER_INFLUXDB_INIT_BUCKET: 'energy_data',
      DOCKER_INFLUXDB_INIT_RETENTION: '30d',
    });
    expect(s.redis!.command!.join(' ')).toContain('--maxmemory 512mb');
    const ei = s['energy-ingest']!;
    expect(Object.keys(ei.environment!)).toEqual(
      expect.arrayContaining([
        'INFLUX_URL',
        'INFLUX_TOKEN',
        'INFLUX_ORG',
        'INFLUX_BUCKET',
        'REDIS_URL',
        'DATABASE_URL',
        'DATA_DIR',
      ]),
    );
    expect(ei.depends_on).toEqual({
      postgres: { condition: 'service_healthy' },
      influxdb: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
      'energy-ingest-migrate': { condition: 'service_completed_successfully' },
    });
    expect(s['energy-ingest-migrate']!.command).toEqual(['migrate']);
    for (const name of ['postgres', 'influxdb', 'redis', 'energy-ingest'])
      expect(s[name]!.healthcheck).toBeDefined();
  });

  it('ships no real secrets: every password in the compose file comes from .env', () => {
    const text = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
    // no literal value after any *PASSWORD / *TOKEN key: each comes from a ${VAR}
    for (const m of text.matchAll(/^\s*[A-Z_]*(PASSWORD|TOKEN):\s*(.*)$/gm))
      expect(m[2]!.trim().startsWith('${')).toBe(true);
    expect(text).toMatch(/POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?/);
  });

  it("the image's build stage compiles from exactly what the Dockerfile copies into it", async () => {
    const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const buildStage = text.split(/^FROM /m)[1]!;
    const dir = mkdtempSync(join(tmpdir(), 'ei-docker-'));
    for (const m of buildStage.matchAll(/^COPY (?!--from)(.+)$/gm)) {
      const parts = m[1]!.trim().split(/\s+/);
      const dest = parts.pop()!;
      for (const src of parts) {
        const target = dest === './' ? join(dir, src) : join(dir, dest);
        cpSync(join(ROOT, src), target, { recursive: true });
      }
    }
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    await expect(
      exec('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: dir, timeout: 120_000 }),
    ).resolves.toBeDefined();
    expect(existsSync(join(dir, 'dist', 'src', 'cli', 'main.js'))).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it('Dockerfile: multi-stage, production deps only, non-root, healthcheck', () => {
    const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    expect(text.match(/^FROM /gm)).toHaveLength(2);
    expect(text).toContain('npm ci --omit=dev');
    expect(text).toMatch(/^USER energy$/m);
    expect(text).toMatch(/^HEALTHCHECK /m);
  });

  it('profile "cluster": HAProxy with deploy/haproxy.cfg in front of three redis-mode nodes, each with its own DATA_DIR volume', async () => {
    await expect(compose('--profile', 'cluster', 'config', '-q')).resolves.toBeDefined();
    const cfg = parse((await compose('--profile', 'cluster', 'config')).stdout) as {
      services: Record<
        string,
        {
          profiles?: string[];
          ports?: Array<{ published: number | string; target: number }>;
          environment?: Record<string, string>;
          volumes?: Array<string | { source: string; target: string }>;
        }
      >;
    };
    // compose 1.29 prints short volume syntax (source:target:mode)
    const source = (v: string | { source: string }) => (typeof v === 'string' ? v.split(':')[0]! : v.source);
    const s = cfg.services;
    const lb = s.haproxy!;
    expect(lb.profiles).toEqual(['cluster']);
    expect(lb.ports!.map((p) => [Number(p.published), p.target])).toEqual([
      [1883, 1883],
      [8080, 8080],
    ]);
    expect(lb.volumes!.some((v) => source(v).endsWith('deploy/haproxy.cfg'))).toBe(true);
    const nodes = ['node1', 'node2', 'node3'].map((n) => s[n]!);
    for (const n of nodes) {
      expect(n.profiles).toEqual(['cluster']);
      expect(n.environment).toMatchObject({ CLUSTER_MODE: 'redis', DATA_DIR: '/var/lib/energy-ingest' });
      expect(n.ports ?? []).toEqual([]); // reached through the balancer only
    }
    expect(new Set(nodes.map((n) => n.environment!.CLUSTER_NODE_ID)).size).toBe(3);
    expect(new Set(nodes.map((n) => source(n.volumes![0]!))).size).toBe(3);
    // the balancer's server names are the compose services
    const haproxyCfg = readFileSync(join(ROOT, 'deploy', 'haproxy.cfg'), 'utf8');
    for (const n of ['node1', 'node2', 'node3']) expect(haproxyCfg).toContain(`server ${n} ${n}:1883`);
  });
});
