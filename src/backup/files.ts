import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip, createGzip, type Gzip } from 'node:zlib';
import { IngestError } from '../errors.js';
import { MANIFEST } from './store.js';

// Files of a backup set: gzip'd text, one record per line, written with
// backpressure (a large table or a month of readings never sits in memory),
// and the manifest that lists every file with its size and SHA-256.

export class LineWriter {
  private readonly gz: Gzip;
  private readonly out: WriteStream;
  private readonly done: Promise<unknown>;
  lines = 0;

  constructor(path: string) {
    this.gz = createGzip({ level: 6 });
    this.out = createWriteStream(path, { mode: 0o600 });
    this.gz.pipe(this.out);
    this.done = once(this.out, 'close');
    // an error on either stream rejects close()
    this.out.on('error', () => {});
    this.gz.on('error', () => {});
  }

  static async open(dir: string, rel: string): Promise<LineWriter> {
    await mkdir(dirname(join(dir, rel)), { recursive: true, mode: 0o700 });
    return new LineWriter(join(dir, rel));
  }

  async write(line: string): Promise<void> {
    this.lines++;
    if (!this.gz.write(`${line}\n`)) await once(this.gz, 'drain');
  }

  async close(): Promise<void> {
    const failed = new Promise<never>((_, reject) => {
      this.out.once('error', reject);
      this.gz.once('error', reject);
    });
    this.gz.end();
    await Promise.race([this.done, failed]);
  }
}

/** The lines of a gzip'd file, streamed. */
export async function* readLines(path: string): AsyncGenerator<string> {
  const input = createReadStream(path).pipe(createGunzip());
  const rl = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of rl) if (line) yield line;
}

export interface FileEntry {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

export async function describeFile(dir: string, rel: string): Promise<FileEntry> {
  const path = join(dir, rel);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return { path: rel, bytes: (await stat(path)).size, sha256: hash.digest('hex') };
}

export type PartStatus = 'ok' | 'failed' | 'skipped';

export interface Manifest {
  readonly format: 'energy-ingest-backup';
  readonly format_version: 1;
  readonly name: string;
  readonly started_at: string;
  readonly finished_at: string;
  readonly host: string;
  /** every configured part finished */
  readonly complete: boolean;
  readonly parts: Record<string, { status: PartStatus; error?: string; [k: string]: unknown }>;
  readonly files: FileEntry[];
}

/**
 * Parse a manifest and check every file it lists against the set's directory:
 * present, same size, same SHA-256. Throws EI_BACKUP_CORRUPT naming each
 * problem, before anything is restored.
 */
export async function verifySet(dir: string, text: string | undefined, where: string): Promise<Manifest> {
  if (text === undefined) throw new IngestError('EI_BACKUP_CORRUPT', `${where}: no ${MANIFEST}`);
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (err) {
    throw new IngestError(
      'EI_BACKUP_CORRUPT',
      `${where}: ${MANIFEST} is not JSON (${(err as Error).message})`,
    );
  }
  if (m?.format !== 'energy-ingest-backup' || !Array.isArray(m.files) || typeof m.parts !== 'object') {
    throw new IngestError(
      'EI_BACKUP_CORRUPT',
      `${where}: ${MANIFEST} is not an energy-ingest backup manifest`,
    );
  }
  if (m.format_version !== 1)
    throw new IngestError(
      'EI_BACKUP_CORRUPT',
      `${where}: manifest format ${m.format_version} is not supported`,
    );
  const problems: string[] = [];
  for (const f of m.files) {
    if (typeof f.path !== 'string' || f.path.includes('..') || f.path.startsWith('/')) {
      problems.push(`bad path ${JSON.stringify(f.path)}`);
      continue;
    }
    let actual: FileEntry;
    try {
      actual = await describeFile(dir, f.path);
    } catch {
      problems.push(`${f.path}: missing`);
      continue;
    }
    if (actual.bytes !== f.bytes) problems.push(`${f.path}: ${actual.bytes} bytes, manifest says ${f.bytes}`);
    else if (actual.sha256 !== f.sha256)
      problems.push(`${f.path}: SHA-256 ${actual.sha256} ≠ manifest ${f.sha256}`);
  }
  if (problems.length)
    throw new IngestError(
      'EI_BACKUP_CORRUPT',
      `${where}: backup set ${m.name} is corrupted, nothing restored: ${problems.join('; ')}`,
    );
  if (!m.complete) {
    const failed = Object.entries(m.parts)
      .filter(([, p]) => p.status === 'failed')
      .map(([k, p]) => `${k} (${p.error ?? 'failed'})`);
    throw new IngestError(
      'EI_BACKUP_CORRUPT',
      `${where}: backup set ${m.name} is incomplete (failed: ${failed.join(', ') || '?'}), nothing restored`,
    );
  }
  return m;
}
