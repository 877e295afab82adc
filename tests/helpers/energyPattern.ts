// Generated hourly energy use with daily and weekly cycles and noise, for the
// forecast tests and bench: the same building kinds as the simulator (office,
// residential, retail; simulators/profiles.ts), each with its own weekend, a
// slowly wandering level (weather: AR(1) per hour) and ±8% noise per hour.
// Seeded, so every run sees the same numbers.

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gauss(r: () => number): number {
  const u = Math.max(1e-12, r());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

/** Occupancy 0..1 of building kind (building % 3) at a local hour and weekday (0 = Sunday). */
function occupancy(building: number, hour: number, weekday: number): number {
  const weekend = weekday === 0 || weekday === 6;
  switch (building % 3) {
    case 1: // office: 8–19 on weekdays, a skeleton crew at weekends
      if (weekend) return hour >= 9 && hour < 15 ? 0.25 : 0.08;
      return hour >= 8 && hour < 19 ? 1 : hour === 7 || hour === 19 ? 0.5 : 0.1;
    case 2: // residential: mornings and evenings, more at home at weekends
      if (hour >= 18 || hour < 1) return weekend ? 1 : 0.9;
      if (hour >= 6 && hour < 9) return 0.6;
      return weekend ? 0.6 : 0.25;
    default: // retail: 10–22, busier at weekends
      return hour >= 10 && hour < 22 ? (weekend ? 1 : 0.75) : 0.1;
  }
}

/**
 * kWh for each hour from epoch hour `startHour`, `hours` long, for `building`.
 * Local time is UTC+9 (the simulator's buildings are in Korea).
 */
export function energyPattern(building: number, startHour: number, hours: number, seed = building): number[] {
  const r = rng(seed * 7919 + 17);
  const base = 40 + (building % 7) * 15; // kWh per hour at full occupancy
  const out: number[] = [];
  let weather = 0;
  for (let i = 0; i < hours; i++) {
    const local = startHour + i + 9;
    const hour = ((local % 24) + 24) % 24;
    const weekday = (Math.floor(local / 24) + 4) % 7; // epoch day 0 was a Thursday
    weather = 0.97 * weather + 0.012 * gauss(r);
    const v = base * (0.15 + occupancy(building, hour, weekday)) * (1 + weather) * (1 + 0.08 * gauss(r));
    out.push(Math.max(0.01, Math.round(v * 1000) / 1000));
  }
  return out;
}
