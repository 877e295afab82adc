import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// The compose stack's phase2 profile (MinIO, the guide's file store, as the
// backup target) and the backup schedule example, validated offline.

const ROOT = join(import.meta.dirname, '..', '..');
const exec = promisify(execFile);
const compose = (envFile: string, ...args: string[]) =>
  exec('docker-compose', ['-f', 'docker-compose.yml', '--env-file', envFile, ...args], {
    cwd: ROOT,
    timeout: 60_000,
  });

type Services = Record<
  string,
  {
    ports?: Array<{ published: number | string; target: number }>;
    environment?: Record<string, string>;
    profiles?: string[];
    depends_on?: Record<string, { condition: string }>;
    command?: string[];
  }
>;

describe('docker-compose phase2 profile (MinIO) and scheduled backups', () => {
  it('validates with the profile; MinIO on 9000/9001 only in phase2; energy-ingest wired to it', async () => {
    await expect(compose('.env.example', '--profile', 'phase2', 'config', '-q')).resolves.toBeDefined();
    const s = (
      parse((await compose('.env.example', '--profile', 'phase2', 'config')).stdout) as { services: Services }
    ).services;
    expect(s.minio!.ports!.map((p) => [Number(p.published), p.target])).toEqual([
      [9000, 9000],
      [9001, 9001],
    ]);
    expect(s.minio!.profiles).toEqual(['phase2']);
    expect(s['minio-init']!.profiles).toEqual(['phase2']);
    expect(s['minio-init']!.depends_on).toEqual({ minio: { condition: 'service_healthy' } });
    expect(s['minio-init']!.command!.join(' ')).toContain('mc mb --ignore-existing local/energy-backups');
    expect(s['energy-ingest']!.environment).toMatchObject({
      S3_ENDPOINT: 'http://minio:9000',
      S3_ACCESS_KEY: 'energy_minio',
      S3_SECRET_KEY: 'change-me-minio',
      EI_BACKUP_KEEP: '7',
    });
    expect(s['energy-ingest']!.profiles).toBeUndefined();
  });

  it('the schedule example: BACKUP_CRON and BACKUP_TO in .env reach backup.cron and backup.to', async () => {
    const env = join(mkdtempSync(join(tmpdir(), 'ei-compose-')), '.env');
    writeFileSync(
      env,
      `${readFileSync(join(ROOT, '.env.example'), 'utf8')}\nBACKUP_CRON=0 3 * * *\nBACKUP_TO=s3://energy-backups/energy-ingest\n`,
    );
    const s = (parse((await compose(env, '--profile', 'phase2', 'config')).stdout) as { services: Services })
      .services;
    expect(s['energy-ingest']!.environment).toMatchObject({
      EI_BACKUP_CRON: '0 3 * * *',
      EI_BACKUP_TO: 's3://energy-backups/energy-ingest',
    });
  });

  it('an existing .env without the MinIO settings still validates for the base stack', async () => {
    const env = join(mkdtempSync(join(tmpdir(), 'ei-compose-')), '.env');
    writeFileSync(
      env,
      readFileSync(join(ROOT, '.env.example'), 'utf8')
        .split('\n')
        .filter((l) => !/MINIO|BACKUP/.test(l))
        .join('\n'),
    );
    await expect(compose(env, 'config', '-q')).resolves.toBeDefined();
  });
});
