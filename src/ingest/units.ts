// Default unit per sensor type when the payload names none (contract section 4).
const DEFAULT_UNITS: Readonly<Record<string, string>> = {
  temperature: 'celsius',
  humidity: 'percent',
  power: 'W',
  energy: 'kWh',
  illuminance: 'lux',
  co2: 'ppm',
};

/** '' for sensor types without a default: the unit field is still written so every point has the same fields. */
export function defaultUnit(sensorType: string): string {
  return Object.hasOwn(DEFAULT_UNITS, sensorType) ? DEFAULT_UNITS[sensorType]! : '';
}
