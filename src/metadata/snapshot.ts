import { canonicalBuildingKey } from '../ingest/building.js';

// The metadata the daemon works from, swapped whole on every load so readers
// never see half an update.

export interface Tenant {
  readonly id: number;
  readonly building_id: number | null;
  readonly name: string;
  readonly contact_info: string | null;
  readonly move_in_date: string | null;
  readonly contract_end_date: string | null;
}

export interface Building {
  readonly id: number;
  readonly key: string;
  readonly name: string;
  readonly address: string;
  readonly total_area: number | null;
  readonly floors: number | null;
  readonly building_type: string | null;
  readonly tenants: readonly Tenant[];
}

export interface AlertRuleRow {
  readonly id: string;
  readonly sensor_type: string;
  readonly building_id: number | null;
  readonly floor: string | null;
  readonly room: string | null;
  readonly above: number | null;
  readonly below: number | null;
  readonly hysteresis: number;
  readonly for_seconds: number;
  readonly offline_after_seconds: number | null;
  readonly severity: string;
  readonly message: string | null;
  readonly enabled: boolean;
}

export interface DeviceRow {
  readonly id: number;
  readonly username: string;
  readonly password_hash: string;
  readonly building_id: number | null;
  readonly role: string;
  readonly enabled: boolean;
}

export interface MetadataSnapshot {
  readonly source: 'postgres' | 'file' | 'config';
  readonly loadedAt: string;
  readonly buildings: readonly Building[];
  readonly alertRules: readonly AlertRuleRow[];
  readonly devices: readonly DeviceRow[];
}

export function configSnapshot(
  buildings: ReadonlyArray<{ id: number; name: string; address: string }>,
): MetadataSnapshot {
  return {
    source: 'config',
    loadedAt: new Date().toISOString(),
    buildings: buildings.map((b) => ({
      id: b.id,
      key: canonicalBuildingKey(b.id),
      name: b.name,
      address: b.address,
      total_area: null,
      floors: null,
      building_type: null,
      tenants: [],
    })),
    alertRules: [],
    devices: [],
  };
}
