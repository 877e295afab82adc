import { defineConfig } from 'vitest/config';

// Two projects: unit tests need nothing; integration and e2e tests share one
// throwaway InfluxDB 1.x and one VictoriaMetrics started by the global setup.
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', './tests/helpers/summaryReporter.ts'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['tests/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'services',
          include: ['tests/integration/**/*.test.ts', 'tests/e2e/**/*.test.ts'],
          globalSetup: ['tests/helpers/globalSetup.ts'],
        },
      },
    ],
  },
});
