#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (built by `npm run build`).
// The durable log's fsyncs, the file sinks and DNS share libuv's thread pool;
// 4 threads (the default) let a slow fsync hold up everything else. It must be
// set before the pool is first used, hence here.
process.env.UV_THREADPOOL_SIZE ??= '16';
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2)));
