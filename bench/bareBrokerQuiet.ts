// The bare Aedes baseline with the daemon's quiet debug loggers (src/quietDebug.ts):
// what bare Aedes costs without the disabled-logger calls the daemon no longer pays.
import '../src/quietDebug.js';

await import('./bareBroker.js');
