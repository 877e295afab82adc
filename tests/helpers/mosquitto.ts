import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort, tempDir } from './services.js';

// A throwaway Mosquitto (Debian's /usr/sbin/mosquitto 2.0) on a free loopback
// port with persistence in its own temp dir, for the bridge-mode tests and the
// bench. kill9() is a crash, restart() starts it again on the same port and
// persistence directory, stop() ends it and removes the directory.

export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  pid(): number | undefined;
  /** SIGKILL: what Mosquitto saved before stays (autosave), the rest is gone */
  kill9(): Promise<void>;
  /** SIGTERM: Mosquitto writes its persistence file on the way out */
  shutdown(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  output(): string;
}

export async function startMosquitto(extraConfig: string[] = []): Promise<Mosquitto> {
  const dir = tempDir('mosquitto');
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      // as root Mosquitto would switch to the user "mosquitto", who cannot write this temp dir
      `user ${userInfo().username}`,
      'persistence true',
      `persistence_location ${dir}/`,
      // the operator settings README "Bridge mode" asks for: no cap on what is queued for us
      'max_queued_messages 0',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      ...extraConfig,
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  let out = '';
  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const launch = async () => {
    if (alive()) return;
    const c = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const keep = (b: Buffer) => {
      out = (out + b.toString()).slice(-20_000);
    };
    c.stdout!.on('data', keep);
    c.stderr!.on('data', keep);
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`mosquitto exited with ${c.exitCode}\n${out}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`mosquitto not listening within 15 s\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const signal = async (sig: NodeJS.Signals) => {
    const c = child;
    if (!c || !alive()) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(sig);
    await exited;
  };
  await launch();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    pid: () => child?.pid,
    kill9: () => signal('SIGKILL'),
    shutdown: () => signal('SIGTERM'),
    restart: launch,
    async stop() {
      const t = setTimeout(() => child?.kill('SIGKILL'), 5000);
      await signal('SIGTERM');
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
    output: () => out,
  };
}
