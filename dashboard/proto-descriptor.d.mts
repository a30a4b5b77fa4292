export const PROTO: string;
export function descriptorSet(path?: string): Uint8Array;
