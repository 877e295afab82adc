// Alert messages in the operators' language (alerts.locale). Korean follows
// the system guide's wording ("전력 사용량이 임계치를 초과했습니다").

export type Locale = 'ko' | 'en';

export type MessageKind = 'above' | 'below' | 'cleared' | 'offline' | 'online';

const NAMES: Record<Locale, Record<string, string>> = {
  ko: {
    temperature: '온도',
    humidity: '습도',
    power: '전력 사용량',
    energy: '에너지 사용량',
    illuminance: '조도',
    co2: 'CO2 농도',
  },
  en: {
    temperature: 'Temperature',
    humidity: 'Humidity',
    power: 'Power usage',
    energy: 'Energy usage',
    illuminance: 'Illuminance',
    co2: 'CO2 level',
  },
};

/** Korean subject particle: 이 after a final consonant (or a Latin/digit ending read as one), else 가. */
function subject(name: string): string {
  const last = name.codePointAt(name.length - 1) ?? 0;
  if (last >= 0xac00 && last <= 0xd7a3) return `${name}${(last - 0xac00) % 28 ? '이' : '가'}`;
  return `${name}이(가)`;
}

export interface MessageInput {
  readonly sensorType: string;
  readonly value: number | null;
  readonly threshold: number | null;
  readonly unit: string;
  readonly floor: string;
  readonly room: string;
  readonly building: string;
}

function fmt(n: number | null, unit: string): string {
  if (n === null) return '-';
  const s = Number.isInteger(n) ? String(n) : String(Math.round(n * 1000) / 1000);
  return unit ? `${s} ${unit}` : s;
}

export function alertMessage(locale: Locale, kind: MessageKind, m: MessageInput): string {
  const known = NAMES[locale][m.sensorType];
  const v = fmt(m.value, m.unit);
  const t = fmt(m.threshold, m.unit);
  if (locale === 'ko') {
    const name = known ?? `${m.sensorType} 값`;
    switch (kind) {
      case 'above':
        return `${subject(name)} 임계치를 초과했습니다 (현재 ${v}, 임계치 ${t})`;
      case 'below':
        return `${subject(name)} 임계치 미만으로 떨어졌습니다 (현재 ${v}, 임계치 ${t})`;
      case 'cleared':
        return `${subject(name)} 정상 범위로 돌아왔습니다 (현재 ${v})`;
      case 'offline':
        return `센서 응답 없음: ${m.floor} ${m.room}의 ${name} 센서가 ${m.threshold}초 동안 데이터를 보내지 않았습니다`;
      case 'online':
        return `센서가 다시 데이터를 보내고 있습니다: ${m.floor} ${m.room}의 ${name}`;
    }
  }
  const name = known ?? `${m.sensorType} reading`;
  switch (kind) {
    case 'above':
      return `${name} exceeded the threshold (now ${v}, threshold ${t})`;
    case 'below':
      return `${name} fell below the threshold (now ${v}, threshold ${t})`;
    case 'cleared':
      return `${name} is back to normal (now ${v})`;
    case 'offline':
      return `Sensor offline: no ${name.toLowerCase()} from ${m.floor} ${m.room} for ${m.threshold} s`;
    case 'online':
      return `Sensor reporting again: ${name.toLowerCase()} from ${m.floor} ${m.room}`;
  }
}

/**
 * A rule's own message, with {value}, {threshold}, {unit}, {sensor_type},
 * {floor}, {room} and {building_id} filled in; unknown placeholders stay as written.
 */
export function fillTemplate(template: string, m: MessageInput): string {
  const vars: Record<string, string> = {
    value: m.value === null ? '-' : String(m.value),
    threshold: m.threshold === null ? '-' : String(m.threshold),
    unit: m.unit,
    sensor_type: m.sensorType,
    floor: m.floor,
    room: m.room,
    building_id: m.building,
  };
  return template.replace(/\{([a-z_]+)\}/g, (all, k: string) => (Object.hasOwn(vars, k) ? vars[k]! : all));
}
