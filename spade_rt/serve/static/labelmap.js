// Painting and undo on the label map: an integer id buffer (Uint8Array, Uint16Array past 256 classes) of
// W x H ids, row-major. Everything here writes ids into that buffer and nothing else (no DOM), so what the
// painter sends is exactly what was painted, and Node tests it (web/test/labelmap.test.js).

export const HISTORY = 100; // undo steps kept

/** A disc of radius r (dx^2 + dy^2 <= r^2) of class c centred on (cx, cy), clipped to the map. */
export function stamp(ids, W, H, cx, cy, r, c) {
  const r2 = r * r;
  for (let dy = -r; dy <= r; dy++) {
    const y = cy + dy;
    if (y < 0 || y >= H) continue;
    for (let dx = -r; dx <= r; dx++) {
      const x = cx + dx;
      if (x < 0 || x >= W || dx * dx + dy * dy > r2) continue;
      ids[y * W + x] = c;
    }
  }
}

/** Integer steps from a to b (a itself excluded: it was stamped already), a disc at each; a === b: one disc. */
export function line(ids, W, H, a, b, r, c) {
  const dx = b.x - a.x, dy = b.y - a.y, n = Math.max(Math.abs(dx), Math.abs(dy));
  if (n === 0) { stamp(ids, W, H, b.x, b.y, r, c); return; }
  for (let i = 1; i <= n; i++) {
    stamp(ids, W, H, a.x + Math.floor((2 * dx * i + n) / (2 * n)), a.y + Math.floor((2 * dy * i + n) / (2 * n)), r, c);
  }
}

/** The 4-connected region of the id at (x, y) -> class c; false when it is class c already (nothing changed). */
export function fill(ids, W, H, x, y, c) {
  const target = ids[y * W + x];
  if (target === c) return false;
  const stack = [y * W + x];
  ids[y * W + x] = c;
  while (stack.length) {
    const p = stack.pop(), px = p % W, py = (p - px) / W;
    if (px > 0 && ids[p - 1] === target) { ids[p - 1] = c; stack.push(p - 1); }
    if (px < W - 1 && ids[p + 1] === target) { ids[p + 1] = c; stack.push(p + 1); }
    if (py > 0 && ids[p - W] === target) { ids[p - W] = c; stack.push(p - W); }
    if (py < H - 1 && ids[p + W] === target) { ids[p + W] = c; stack.push(p + W); }
  }
  return true;
}

/** Undo and redo as whole copies of the map (a 512x512 map is 256 KiB; `limit` copies at most). */
export class History {
  constructor(limit = HISTORY) {
    this.limit = limit;
    this.undoStack = [];
    this.redoStack = [];
  }

  get canUndo() { return this.undoStack.length > 0; }

  get canRedo() { return this.redoStack.length > 0; }

  /** Before an edit: keep `before` (a copy the caller owns no more) for undo; a new edit forgets the redo steps. */
  push(before) {
    this.undoStack.push(before);
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack = [];
  }

  /** Before an edit of `ids`: the map as it is now. */
  remember(ids) { this.push(ids.slice()); }

  /** `ids` back one step, in place; false when there is nothing to undo. */
  undo(ids) { return this.#swap(ids, this.undoStack, this.redoStack); }

  /** `ids` forward one undone step, in place; false when there is nothing to redo. */
  redo(ids) { return this.#swap(ids, this.redoStack, this.undoStack); }

  #swap(ids, from, to) {
    if (!from.length) return false;
    to.push(ids.slice());
    ids.set(from.pop());
    return true;
  }
}
