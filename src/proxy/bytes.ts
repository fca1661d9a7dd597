/**
 * @module
 * Joining byte pieces, as the proxy does when it buffers a body or a line that arrived in parts.
 */

/**
 * Joins byte pieces into one array (the piece itself when there is one and it owns a plain
 * `ArrayBuffer`).
 * @param parts the pieces, in order
 * @param size their total length
 * @returns the joined bytes
 */
export function concat(parts: readonly Uint8Array[], size: number): Uint8Array<ArrayBuffer> {
  const first = parts[0];
  if (parts.length === 1 && first !== undefined && first.buffer instanceof ArrayBuffer) {
    return first as Uint8Array<ArrayBuffer>;
  }
  const out = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
