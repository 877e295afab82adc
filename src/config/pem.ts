import { readFileSync } from 'node:fs';
import { IngestError } from '../errors.js';

/** A PEM file named by the configuration, read once at start (unreadable: start-up stops, naming the key). */
export function readPem(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new IngestError(
      'EI_CONFIG_INVALID',
      `invalid configuration:\n  ${key}: cannot read ${path}: ${(err as Error).message}`,
    );
  }
}
