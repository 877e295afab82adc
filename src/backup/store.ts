import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config/types.js';
import { IngestError } from '../errors.js';

// Where backup sets live: a local directory or an S3 bucket (MinIO in the
// compose stack's phase2 profile). A set is a folder named by its start time
// (energy-ingest-YYYY-MM-DDTHH-MM-SS-mmmZ, so names sort by age) holding its
// files and, written last, manifest.json: a set without a manifest is
// unfinished (running, or crashed) and is never restored nor counted as kept.

export const SET_PREFIX = 'energy-ingest-';
export const MANIFEST = 'manifest.json';

export function setName(at: Date): string {
  return `${SET_PREFIX}${at.toISOString().replace(/[:.]/g, '-')}`;
}

export interface SetInfo {
  readonly name: string;
  readonly complete: boolean;
}

export interface Store {
  /** for messages: the directory or s3://bucket/prefix */
  readonly where: string;
  /** the sets under the target, oldest first */
  list(): Promise<SetInfo[]>;
  /** a local directory to write set `name` into before commit() */
  stage(name: string): Promise<string>;
  /** make the staged files durable at the target; the manifest goes last */
  commit(name: string, staged: string, files: readonly string[]): Promise<void>;
  /** the manifest text of a set, or undefined when it has none */
  manifest(name: string): Promise<string | undefined>;
  /** a local directory holding set `name`'s files (downloaded for S3); release() when done */
  open(name: string, files: readonly string[]): Promise<{ dir: string; release(): Promise<void> }>;
  remove(name: string): Promise<void>;
  /** `--from` may name one set itself (its folder or prefix holds manifest.json) */
  readonly selfSet?: string;
}

export class DirStore implements Store {
  readonly where: string;
  private readonly root: string;
  readonly selfSet?: string;

  constructor(dir: string, selfSet?: string) {
    this.root = resolve(dir);
    this.where = this.root;
    this.selfSet = selfSet;
  }

  private path(name: string): string {
    return name === this.selfSet ? this.root : join(this.root, name);
  }

  async list(): Promise<SetInfo[]> {
    let names: string[];
    try {
      names = (await readdir(this.root, { withFileTypes: true }))
        .filter((d) => d.isDirectory() && d.name.startsWith(SET_PREFIX))
        .map((d) => d.name)
        .sort();
    } catch {
      return [];
    }
    const out: SetInfo[] = [];
    for (const name of names) {
      const complete = await stat(join(this.root, name, MANIFEST)).then(
        () => true,
        () => false,
      );
      out.push({ name, complete });
    }
    return out;
  }

  async stage(name: string): Promise<string> {
    const dir = this.path(name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  async commit(): Promise<void> {
    // staged in place; the manifest written by the caller completes the set
  }

  async manifest(name: string): Promise<string | undefined> {
    return readFile(join(this.path(name), MANIFEST), 'utf8').catch(() => undefined);
  }

  async open(name: string): Promise<{ dir: string; release(): Promise<void> }> {
    return { dir: this.path(name), release: async () => {} };
  }

  async remove(name: string): Promise<void> {
    await rm(this.path(name), { recursive: true, force: true });
  }

  static async forSource(dir: string): Promise<DirStore> {
    const abs = resolve(dir);
    const own = await stat(join(abs, MANIFEST)).then(
      () => true,
      () => false,
    );
    if (!own) return new DirStore(abs);
    return new DirStore(abs, abs.split('/').pop() ?? abs);
  }
}

type S3Module = typeof import('@aws-sdk/client-s3');

export class S3Store implements Store {
  readonly where: string;
  selfSet?: string;

  private constructor(
    private readonly s3: S3Module,
    private readonly client: InstanceType<S3Module['S3Client']>,
    private readonly bucket: string,
    private readonly prefix: string,
  ) {
    this.where = `s3://${bucket}/${prefix}`;
  }

  static async create(cfg: Config, url: string): Promise<S3Store> {
    const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
    if (!m?.[1]) throw new IngestError('EI_CLI_USAGE', `"${url}" is not s3://BUCKET/PREFIX`);
    const s3 = await import('@aws-sdk/client-s3');
    const credentials =
      cfg.s3.accessKey && cfg.s3.secretKey
        ? { accessKeyId: cfg.s3.accessKey, secretAccessKey: cfg.s3.secretKey }
        : undefined;
    const client = new s3.S3Client({
      region: cfg.s3.region,
      endpoint: cfg.s3.endpoint,
      forcePathStyle: true, // MinIO and other self-hosted servers have no per-bucket host names
      credentials,
      // only the checksums S3 itself requires: MinIO releases and other S3 servers differ in
      // the newer flexible-checksum trailers; integrity is checked by the manifest's SHA-256
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 5,
    });
    const prefix = (m[2] ?? '').replace(/\/+$/, '');
    return new S3Store(s3, client, m[1], prefix ? `${prefix}/` : '');
  }

  private key(name: string, file: string): string {
    return name === this.selfSet ? `${this.prefix}${file}` : `${this.prefix}${name}/${file}`;
  }

  async list(): Promise<SetInfo[]> {
    const sets = new Map<string, boolean>();
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new this.s3.ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: `${this.prefix}${SET_PREFIX}`,
          ContinuationToken: token,
        }),
      );
      for (const o of r.Contents ?? []) {
        const rest = (o.Key ?? '').slice(this.prefix.length);
        const slash = rest.indexOf('/');
        if (slash <= 0) continue;
        const name = rest.slice(0, slash);
        sets.set(name, (sets.get(name) ?? false) || rest.slice(slash + 1) === MANIFEST);
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return [...sets.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, complete]) => ({ name, complete }));
  }

  async stage(name: string): Promise<string> {
    return mkdtemp(join(tmpdir(), `${name}-`));
  }

  async commit(name: string, staged: string, files: readonly string[]): Promise<void> {
    try {
      for (const f of [...files.filter((x) => x !== MANIFEST), MANIFEST]) {
        const path = join(staged, f);
        const { size } = await stat(path);
        await this.client.send(
          new this.s3.PutObjectCommand({
            Bucket: this.bucket,
            Key: this.key(name, f),
            Body: createReadStream(path),
            ContentLength: size,
          }),
        );
      }
    } finally {
      await rm(staged, { recursive: true, force: true });
    }
  }

  async manifest(name: string): Promise<string | undefined> {
    try {
      const r = await this.client.send(
        new this.s3.GetObjectCommand({ Bucket: this.bucket, Key: this.key(name, MANIFEST) }),
      );
      return await r.Body?.transformToString('utf8');
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
      throw err;
    }
  }

  async open(name: string, files: readonly string[]): Promise<{ dir: string; release(): Promise<void> }> {
    const dir = await mkdtemp(join(tmpdir(), `${name}-`));
    const release = () => rm(dir, { recursive: true, force: true });
    try {
      for (const f of files) {
        const path = join(dir, f);
        await mkdir(dirname(path), { recursive: true, mode: 0o700 });
        let body: Readable;
        try {
          const r = await this.client.send(
            new this.s3.GetObjectCommand({ Bucket: this.bucket, Key: this.key(name, f) }),
          );
          body = r.Body as Readable;
        } catch (err) {
          const e = err as { name?: string };
          // missing: verification reports it with the other problems
          if (e.name === 'NoSuchKey') continue;
          throw err;
        }
        await pipeline(body, createWriteStream(path, { mode: 0o600 }));
      }
      await writeFile(join(dir, MANIFEST), (await this.manifest(name)) ?? '', { mode: 0o600 });
    } catch (err) {
      await release();
      throw err;
    }
    return { dir, release };
  }

  async remove(name: string): Promise<void> {
    let token: string | undefined;
    const prefix = name === this.selfSet ? this.prefix : `${this.prefix}${name}/`;
    do {
      const r = await this.client.send(
        new this.s3.ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      const keys = (r.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length) {
        const d = await this.client.send(
          new this.s3.DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys, Quiet: true } }),
        );
        if (d.Errors?.length)
          throw new IngestError(
            'EI_BACKUP_FAILED',
            `pruning ${name}: ${d.Errors.length} objects not deleted (${d.Errors[0]?.Key}: ${d.Errors[0]?.Message})`,
          );
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  /** `--from s3://bucket/prefix/energy-ingest-…`: that set itself */
  async detectSelf(): Promise<void> {
    const last = this.prefix.replace(/\/$/, '').split('/').pop() ?? '';
    if (!last.startsWith(SET_PREFIX)) return;
    this.selfSet = last;
    if ((await this.manifest(last)) === undefined) this.selfSet = undefined;
  }

  destroy(): void {
    this.client.destroy();
  }
}

export async function openStore(cfg: Config, target: string, forSource: boolean): Promise<Store> {
  if (target.startsWith('s3://')) {
    const s = await S3Store.create(cfg, target);
    if (forSource) await s.detectSelf();
    return s;
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target))
    throw new IngestError(
      'EI_CLI_USAGE',
      `"${target}": a backup target is a directory or s3://BUCKET/PREFIX`,
    );
  return forSource ? DirStore.forSource(target) : new DirStore(target);
}

export function closeStore(store: Store): void {
  if (store instanceof S3Store) store.destroy();
}
